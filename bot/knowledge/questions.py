"""The questions a passage answers, indexed beside it so a question finds its passage.

They come, in order, from reviewed data shipped with the articles (``passage_questions.yaml``,
keyed by the passage's content hash), from the cache (keyed by that hash and the prompt, so an
edited prompt makes new ones), or from the chat model the index is given, with the prompt
``prompts/passage_questions.md``. A model that fails costs only its passage's questions: the
passage is still indexed by its text, and the failure is a notice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from bot.datafiles import load_yaml_model
from bot.prompts import PromptLibrary

PROMPT = "passage_questions.md"
MAX_QUESTIONS = 6
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.)])\s*", re.I)
log = logging.getLogger(__name__)


def content_hash(text: str) -> str:
    """The key of a passage's questions: SHA-256 of its text with runs of space made one."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:24]


def parse_questions(reply: str, limit: int = MAX_QUESTIONS) -> list[str]:
    """The distinct questions, one a line, of the model's reply (numbering and quotes dropped)."""
    found: list[str] = []
    for line in reply.splitlines():
        text = _NUMBERING.sub("", line).strip().strip("\"'“”*").strip()
        words = len(text.split())
        if text.endswith("?") and 3 <= words <= 30 and text.lower() not in map(str.lower, found):
            found.append(text)
    return found[:limit]


class QuestionSource(Protocol):
    """Anything that gives the questions a passage answers."""

    notices: list[str]

    def questions(self, text: str, title: str, section: str) -> list[str]: ...


class PassageQuestions:
    """Questions per passage: reviewed data (``reviewed`` files, keyed by content hash), then
    the cache, then the model (``model`` makes it, only when a passage needs it)."""

    def __init__(
        self,
        prompts: PromptLibrary,
        *,
        reviewed: Sequence[Path] = (),
        cache_dir: Path | None = None,
        model: Callable[[], Any] | None = None,
    ) -> None:
        self.prompts = prompts
        self.reviewed = {k: v for path in reviewed for k, v in load_reviewed(path).items()}
        self.cache_dir = cache_dir / "passage_questions" if cache_dir else None
        self._model = model  # a factory: the model is built only when a passage needs it
        self.notices: list[str] = []
        self._prompt_key = hashlib.sha256(prompts.source(PROMPT).encode()).hexdigest()[:12]

    def questions(self, text: str, title: str, section: str) -> list[str]:
        key = content_hash(text)
        if key in self.reviewed:
            return self.reviewed[key]
        cached = self._cached(key)
        if cached is not None:
            return cached
        if self._model is None:
            return []
        try:
            generated = self.generate(text, title, section)
        except Exception as exc:  # any model failure: index the passage without questions
            notice = (
                f"could not generate the questions passages answer ({title!r}: {exc}); "
                "new passages are matched by their text only until the next ingest"
            )
            log.warning("%s", notice)
            self.notices.append(notice)
            self._model = None  # not asked again in this run
            return []
        self._store(key, generated)
        return generated

    def generate(self, text: str, title: str, section: str) -> list[str]:
        """Ask the model (no cache): the questions ``text`` answers."""
        assert self._model is not None
        prompt = self.prompts.render(PROMPT, title=title, section=section, passage=text)
        reply = self._model().invoke([HumanMessage(content=prompt)])
        return parse_questions(str(getattr(reply, "content", reply)))

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}-{self._prompt_key}.json" if self.cache_dir else None

    def _cached(self, key: str) -> list[str] | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # an unreadable cache entry is made again
        return [str(q) for q in data] if isinstance(data, list) else None

    def _store(self, key: str, questions: list[str]) -> None:
        path = self._path(key)
        if path is None or not questions:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(questions, indent=1), encoding="utf-8")
        except OSError as exc:
            log.warning("could not cache passage questions in %s: %s", path, exc)


class ReviewedPassage(BaseModel):
    hash: str
    title: str = ""
    passage: str = ""  # where the passage is and its opening words, for the reviewer
    questions: list[str] = Field(min_length=1)  # reviewed: what is indexed
    generated: list[str] = []  # what the model wrote, kept for the record


class ReviewedQuestions(BaseModel):
    passages: list[ReviewedPassage]


def load_reviewed(path: Path) -> dict[str, list[str]]:
    """content hash -> questions from the reviewed YAML (a missing file holds none)."""
    if not path.is_file():
        return {}
    data = load_yaml_model(path, ReviewedQuestions, "passages (hash, questions)")
    return {p.hash: p.questions for p in data.passages}
