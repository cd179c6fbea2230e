"""Role-play: scenarios, the customer's mood rules and beats, line checks, the simulator, scoring.

Core: imports bot.guidance, bot.safety, bot.prompts and bot.llm; never config, store or an adapter.
"""
