"""Storage: saved sessions and feedback (SQLAlchemy), the users file, files kept for the app.

Infrastructure: may import core models (roleplay, coach) for their types; never an adapter.
"""
