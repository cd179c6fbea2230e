"""The Chainlit web app (an adapter): handlers, Markdown views and templates, the mood chart.

Adapter: reaches everything through bot.service; nothing in the core imports it.
"""
