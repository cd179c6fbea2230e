"""Cleaning what users type: control characters, empty messages, oversized messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.errors import CoachbotError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2028\u2029]")
MAX_INPUT_CHARS = 20_000  # cheap pre-cut before counting tokens


class EmptyInputError(CoachbotError):
    """The message has no text to act on."""


@dataclass
class CleanInput:
    text: str
    notices: list[str] = field(default_factory=list)


def clean_user_text(
    text: str, max_tokens: int, count_tokens: Callable[[str], int] | None = None
) -> CleanInput:
    """Remove control characters, refuse empty text, cut text over ``max_tokens`` with a notice."""
    cleaned = _CONTROL.sub("", text.replace("\r\n", "\n")).strip()
    if not cleaned:
        raise EmptyInputError("your message is empty", hint="type what you want to say")
    notices: list[str] = []
    original_chars = len(cleaned)
    if len(cleaned) > MAX_INPUT_CHARS:
        cleaned = cleaned[:MAX_INPUT_CHARS]
    if count_tokens is not None and count_tokens(cleaned) > max_tokens:
        low, high = 0, len(cleaned)
        while low < high:  # longest prefix within the budget
            mid = (low + high + 1) // 2
            if count_tokens(cleaned[:mid]) <= max_tokens:
                low = mid
            else:
                high = mid - 1
        cleaned = cleaned[:low].rstrip()
    if len(cleaned) < original_chars:
        notices.append(
            f"Your message was {original_chars:,} characters; only the first {len(cleaned):,} "
            f"(about {max_tokens} tokens) were used."
        )
    return CleanInput(cleaned, notices)
