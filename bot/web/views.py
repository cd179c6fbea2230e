"""Markdown views of core results for chat interfaces (jinja2 templates in bot/web/templates/).

Every value a template shows is escaped (``bot.rendering``): user and model text can never
inject a link, an image or HTML. Markup built here is marked :class:`MarkdownSafe`. Views read
no settings: what they need (the knowledge directory, for article titles) is passed in by the
caller.
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from bot.coach.models import Citation, CoachAnswer
from bot.rendering import MarkdownSafe, display_text, markdown_environment
from bot.rendering import markdown_text as md
from bot.roleplay.assignments import AssignmentStatus, day_of
from bot.roleplay.models import Hint, Transcript
from bot.roleplay.scenarios import Scenario
from bot.roleplay.scoring import Rubric, Scorecard
from bot.store.sessions import SessionRecord
from bot.web.mood_chart import TEMPLATES

__all__ = ["md"]  # re-exported: the one escaping function, under its short name

_env = markdown_environment(TEMPLATES)
_LABEL_DROP = re.compile(r"[\\`*_{}\[\]()<>#+=!|~$^@/]|(?i:www)(?=\.)")


def source_label(citation: Citation) -> str:
    """The name of a cited passage: its number and article title (names the side element).

    Markdown-safe as it is (Chainlit links an element's name where it appears in a message, so
    the name cannot be escaped): the title keeps no character Markdown or HTML could read."""
    title = str(citation.metadata.get("title") or citation.metadata.get("origin") or "source")
    title = _LABEL_DROP.sub("", display_text(title, 200)).strip()
    if len(title) > 60:
        title = title[:60].rsplit(" ", 1)[0].rstrip(":,;-") + "…"
    return f"Source {citation.number}: {title}"


def retrieval_markdown(citations: list[Citation]) -> str:
    """The passages retrieved for a question, one a line with its score (the retrieval step)."""
    lines = [f"{md(f'[{c.number}] {source_label(c)}')} (score {c.score:.2f})" for c in citations]
    return "\n".join(lines) or "Nothing relevant in the guidance."


RUBRIC_NAME = "What the debrief checks"  # the side panel's name; Chainlit links it in the brief


def practice_brief_markdown(scenario: Scenario, difficulty: str) -> str:
    """What the trainee reads before the customer's first line."""
    return (
        f"**Practice: {md(scenario.title)}** ({md(difficulty)})\n\n{md(scenario.summary)}\n\n"
        "You are the agent. Listen until they feel heard, then solve it together. "
        "Use **Hint** when stuck and **End and debrief** for your scorecard. "
        "Change the scenario or difficulty in the settings (the gear icon by the message box).\n\n"
        f"Before you start, read {RUBRIC_NAME}: every check, its points and the article behind it."
    )


def rubric_markdown(card: Rubric, knowledge_dir: Path) -> str:
    """The rubric shown before a practice session (titles of cited articles from
    ``knowledge_dir``)."""
    return (
        _env.get_template("rubric.md.j2")
        .render(card=card, source_name=partial(source_name, knowledge_dir=knowledge_dir))
        .strip()
    )


def assignments_markdown(statuses: list[AssignmentStatus], titles: dict[str, str]) -> str:
    """A trainee's open assignments (``titles``: scenario titles by id)."""
    template = _env.get_template("assignments.md.j2")
    return template.render(statuses=statuses, titles=titles, due=day_of).strip()


def coach_answer_markdown(answer: CoachAnswer) -> str:
    labels = [MarkdownSafe(source_label(c)) for c in answer.citations]  # Chainlit links them
    return _env.get_template("coach_answer.md.j2").render(answer=answer, labels=labels).strip()


def hint_markdown(hint: Hint, knowledge_dir: Path) -> str:
    """A hint with its example and the article passage (titles from ``knowledge_dir``)."""
    return (
        f"**Hint:** {md(hint.text)}\n\n"
        f"For example: “{md(hint.example)}”\n\n"
        f"*{md(source_name(hint.source_origin, knowledge_dir))}:* {md(hint.source_quote)}"
    )


@lru_cache(maxsize=4)
def _titles(knowledge_dir: str) -> dict[str, str]:
    from bot.knowledge.documents import documents_by_origin

    try:
        return {o: d.meta.title for o, d in documents_by_origin(Path(knowledge_dir)).items()}
    except Exception:  # a view never fails over a title
        return {}


def source_name(origin: str, knowledge_dir: Path) -> str:
    """'Source: <article title>' for an article's origin file name (the origin if unknown).

    Titles are read from the articles under ``knowledge_dir``."""
    title = _titles(str(knowledge_dir)).get(origin)
    return f"Source: {title}" if title else f"Source ({origin})"


def scorecard_markdown(card: Scorecard, transcript: Transcript, knowledge_dir: Path) -> str:
    """The debrief (titles of cited articles from ``knowledge_dir``)."""
    return (
        _env.get_template("scorecard.md.j2")
        .render(
            card=card,
            transcript=transcript,
            source_name=partial(source_name, knowledge_dir=knowledge_dir),
        )
        .strip()
    )


def _session_row(s: Any) -> str:
    outcome = s.outcome or ("in progress" if s.kind == "practice" else "")
    cells = [
        f"`{re.sub(r'[^0-9A-Za-z-]', '', s.id[:8])}`",  # in a code span: nothing to escape
        s.created_at.strftime("%Y-%m-%d %H:%M"),
        md(f"{s.user or 'anonymous'}{f' ({s.role})' if s.role else ''}"),
        md(s.kind),
        md(f"{s.scenario_title} ({s.difficulty})") if s.scenario_title else "",
        str(s.turns),
        md(outcome.replace("_", " ")),
        "" if s.score is None else str(s.score),
        f"{s.feedback_up}/{s.feedback_down}",
    ]
    return "| " + " | ".join(cells) + " |"


def sessions_table_markdown(summaries: list[Any]) -> str:
    """Saved sessions as a Markdown table (newest first)."""
    if not summaries:
        return "No saved sessions yet."
    rows = [
        "| id | when (UTC) | user | kind | scenario | turns | outcome | score | 👍/👎 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows += [_session_row(s) for s in summaries]
    return "### Saved sessions\n\n" + "\n".join(rows)


def session_markdown(record: SessionRecord, knowledge_dir: Path) -> str:
    """One saved session: transcript and scorecard, or the coach exchanges."""
    transcript = record.transcript()
    card = record.scorecard()
    scorecard_text = (
        scorecard_markdown(card, transcript, knowledge_dir) if card and transcript else ""
    )
    return (
        _env.get_template("session.md.j2")
        .render(
            s=record,
            transcript=transcript,
            exchanges=record.exchanges(),
            scorecard=MarkdownSafe(scorecard_text),
        )
        .strip()
    )
