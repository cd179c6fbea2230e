"""The `coachbot` command line (an adapter): commands over bot.service, admin, evals, doctor.

Adapter: reaches everything through bot.service; nothing in the core imports it.
"""
