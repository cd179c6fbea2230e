"""The coach: grounded Say / Why / Avoid answers for agents mid-shift, with citations.

Core: imports bot.guidance, bot.knowledge, bot.safety, bot.prompts and bot.llm; never config, store
or an adapter.
"""
