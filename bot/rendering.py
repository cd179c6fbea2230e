"""Showing text a user typed or a model wrote: as Markdown, as HTML or on a terminal.

The one place that decides how such text is made harmless (``docs/ARCHITECTURE.md``,
"Rendering user text"):

* :func:`display_text` drops what no reader should get: control characters (terminal escapes
  included), bidirectional overrides and isolates (text that reads in another order than it was
  typed), invisible zero-width characters; text over :data:`MAX_SHOWN_CHARS` is cut with a note.
* :func:`markdown_text` shows that text literally in Markdown (Chainlit renders it with
  react-markdown and GFM): every ASCII punctuation character that Markdown or HTML could read is
  backslash-escaped, line breaks become spaces, and a word joiner (U+2060, invisible) goes
  before each ``:``, ``@`` and the dot of ``www.``, so GFM finds no bare URL or e-mail address
  to turn into a link. No link, image, HTML tag or heading can come out of it.
* :func:`markdown_environment` and :func:`html_environment` are the jinja2 environments for
  Markdown and HTML templates. Both escape every ``{{ ... }}`` value by default: the HTML one
  with jinja2's autoescape (markupsafe), the Markdown one with :func:`markdown_text` as its
  ``finalize``. Markup our own code built is passed as :class:`MarkdownSafe` (or
  ``markupsafe.Markup``).

Terminal output (Rich) uses :func:`display_text` and prints with markup off (``bot/cli``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

MAX_SHOWN_CHARS = 20_000  # what a trainee can type (bot.inputs.MAX_INPUT_CHARS) is shown whole
WORD_JOINER = "\u2060"

# C0 controls but tab and newline, DEL, C1 controls; bidi embeddings, overrides and isolates;
# zero-width and invisible format characters (ZWJ/ZWNJ and LRM/RLM stay: scripts need them).
_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufff9-\ufffb]"
)
# The ASCII punctuation that Markdown (CommonMark, GFM, directives, math) or HTML can read.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-=.!|~$&:^])")
# A word joiner before each ':' and '@', and inside 'www.', defeats GFM's literal autolinks
# (mdast-util-gfm-autolink-literal finds https?://, www. and e-mail addresses in plain text).
# The 'www' rule also fires at the end of the text, so text escaped piece by piece (streamed
# tokens) is broken too.
_AUTOLINK_BREAK = re.compile(r"(?=\\:|@)|(?<=[wW]{3})(?=\\\.|$)")
_LINE_BREAK = re.compile("\r\n|[\r\n\u2028\u2029]")


class MarkdownSafe(str):
    """Markdown our own code built; the Markdown environment does not escape it again."""


def display_text(text: Any, limit: int | None = MAX_SHOWN_CHARS) -> str:
    """``text`` without hidden characters, cut after ``limit`` characters with a note."""
    shown = _HIDDEN.sub("", str(text).replace("\r\n", "\n").replace("\r", "\n"))
    if limit is not None and len(shown) > limit:
        rest = len(shown) - limit
        shown = f"{shown[:limit]} … ({rest:,} more characters not shown)"
    return shown


def markdown_text(text: Any, limit: int | None = MAX_SHOWN_CHARS) -> MarkdownSafe:
    """``text`` shown literally in Markdown, on one line (see the module's docstring)."""
    if isinstance(text, MarkdownSafe):
        return text
    escaped = _MD_SPECIAL.sub(r"\\\1", display_text(text, limit))
    escaped = _AUTOLINK_BREAK.sub(WORD_JOINER, escaped)
    return MarkdownSafe(_LINE_BREAK.sub(" ", escaped))


def _finalize_markdown(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    return markdown_text(value)


def markdown_environment(directory: Path) -> jinja2.Environment:
    """Markdown templates in ``directory``: every value is escaped unless it is MarkdownSafe."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,  # Markdown, not HTML: escaped by finalize
        finalize=_finalize_markdown,
    )
    env.filters["md"] = markdown_text
    return env


def _finalize_html(value: Any) -> Any:
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return display_text(value)
    return value


def html_environment(directory: Path, **options: Any) -> jinja2.Environment:
    """HTML or SVG templates in ``directory``: jinja2 autoescape on, hidden characters dropped."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=True,
        finalize=_finalize_html,
        **options,
    )
