"""Guidance: the catalogue of behaviours the articles teach, detection in a trainee line, metrics.

Core: imports only bot.errors, bot.datafiles and bot.llm (embeddings); never config, store or an
adapter.
"""
