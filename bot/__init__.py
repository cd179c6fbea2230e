"""coachbot: practice and live coaching for agents facing upset customers."""

__version__ = "0.1.0"
