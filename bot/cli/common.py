"""What every `coachbot` command shares: consoles, the ``--json`` flag, errors and exit codes.

Commands exit non-zero with a one-line reason on failure (``COACHBOT_DEBUG=1`` shows the
traceback instead). Text that comes from users, the store, the knowledge base or a model is
printed verbatim, never as Rich markup or terminal control codes: build lines with :func:`line`
(it drops control characters, bidi overrides and zero-width characters, and cuts oversized text:
``bot.rendering.display_text``).

The CLI reads its settings in one place, :func:`settings` (tests patch ``get_settings`` here),
and reaches practice and coaching through :func:`services`, the application's composition root.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from bot.config import Settings, get_settings
from bot.errors import CoachbotError
from bot.rendering import display_text
from bot.safety import redact

if TYPE_CHECKING:
    from bot.service import Services

OK = 0
FAILED = 1  # the command failed (for `coachbot eval`: a regression or a failing case)
SETUP_ERROR = 2  # `coachbot eval` could not run at all
INTERRUPTED = 130  # Ctrl-C

QUIT = {"/quit", "/exit"}

console = Console()
err_console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

T = TypeVar("T")


def settings() -> Settings:
    """The settings every command uses (the one place the CLI reads them)."""
    return get_settings()


def services() -> Services:
    """The application's shared resources for this command (built lazily on first use)."""
    from bot.service import Services

    return Services(settings())


# --------------------------------------------------------------------------- output


def line(*parts: object) -> Text:
    """Output shown verbatim (never read as markup, no control codes); a ``(text, style)`` pair
    is styled."""
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(display_text(part[0]), style=part[1])
        else:
            text.append(part if isinstance(part, Text) else display_text(part))
    return text


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def status(message: str, as_json: bool = False) -> AbstractContextManager[Any]:
    """A spinner while something loads (none with ``--json``)."""
    return nullcontext() if as_json else console.status(line(message), spinner="dots")


def read_line(prompt: str = "you> ") -> str | None:
    """The next line the user types (no prompt when stdin is not a terminal); None at the end."""
    try:
        return console.input(f"[bold cyan]{prompt}[/]") if sys.stdin.isatty() else input()
    except (EOFError, KeyboardInterrupt):
        return None


_shown: set[str] = set()


def notice(text: str) -> None:
    """Print a notice for the user (once per command) as a yellow line on stderr."""
    if text not in _shown:
        _shown.add(text)
        err_console.print(line((text, "yellow")), soft_wrap=True)


class _WarningsAsNotices(logging.Handler):
    """Warnings of the core modules (a rebuilt index, a fallback answer, a queued save)."""

    def emit(self, record: logging.LogRecord) -> None:
        notice(record.getMessage())


_warnings = _WarningsAsNotices(logging.WARNING)


def start_command() -> None:
    """Before every command: no notices shown yet; core warnings become notices."""
    _shown.clear()
    if _warnings not in logging.getLogger("bot").handlers:
        logging.getLogger("bot").addHandler(_warnings)


# --------------------------------------------------------------------------- errors


def fail(message: str, as_json: bool = False, code: int = FAILED) -> NoReturn:
    """Print the one-line reason (and, with ``--json``, an error object) and exit with ``code``.

    The JSON error is ``{"ok": false, "error": ...}``, with ``exit_code`` when it is not 1.
    """
    message = " ".join(message.split())  # one line, even for a YAML parser's message
    if as_json:
        error: dict[str, Any] = {"ok": False, "error": message}
        if code != FAILED:
            error["exit_code"] = code
        print(json.dumps(error))
    err_console.print(
        line(("coachbot: error:", "bold red"), " ", message), highlight=False, soft_wrap=True
    )
    raise typer.Exit(code)


def describe(exc: Exception) -> str:
    """The one-line reason for a failure that is not a CoachbotError."""
    if type(exc).__module__.startswith(("openai", "langchain_openai")):
        return str(_api_error(exc))  # cause, fix, never the key
    return redact(f"{type(exc).__name__}: {exc} (set COACHBOT_DEBUG=1 for details)")


def guard(fn: Callable[[], T], as_json: bool = False, code: int = FAILED) -> T:
    """Run ``fn``; turn any failure into a one-line message and exit ``code`` (130: Ctrl-C)."""
    try:
        return fn()
    except typer.Exit:
        raise
    except CoachbotError as exc:
        fail(str(exc), as_json, code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(INTERRUPTED) from None
    except Exception as exc:
        if os.environ.get("COACHBOT_DEBUG"):
            raise
        fail(describe(exc), as_json, code)


def _api_error(exc: Exception) -> Exception:
    import openai

    from bot.llm.api import settings_api_error

    if not isinstance(exc, openai.APIError):
        return exc
    current = settings()
    return settings_api_error(exc, current, current.openai_embedding_model)
