"""Errors that carry a one-line reason and a fix, shown to users instead of tracebacks."""

from __future__ import annotations

from bot.safety import redact


class CoachbotError(Exception):
    """A failure a user can act on: ``str(err)`` is the reason, ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class ModelUnavailableError(CoachbotError):
    """The chat model cannot be loaded or reached."""


class KnowledgeError(CoachbotError):
    """A knowledge file or the index cannot be used."""


class DataValidationError(CoachbotError):
    """A data file (YAML, front matter) does not match its schema; names file and field."""


class StorageError(CoachbotError):
    """The session store could not be written or read (locked, unreachable, full disk)."""


def describe_failure(exc: BaseException) -> str:
    """One line for a failure: a CoachbotError's reason and fix, otherwise type and message
    (keys and URL credentials masked)."""
    text = str(exc) if isinstance(exc, CoachbotError) else f"{type(exc).__name__}: {exc}"
    return redact(text)
