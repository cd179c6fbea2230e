"""Prompt text kept as files under ``prompts/`` (Jinja2, strict about missing variables).

One loader for every prompt and every fixed message a model or a user sees: templates
(``*.md``) are rendered whole; message files (``*.yaml``: a mapping of name to template text)
give short texts such as the coach's decline messages or the customer's per-beat instructions.
The directory comes from the caller (``Settings.prompts_dir`` via the composition root), so a
different prompts directory takes effect everywhere.
"""

from __future__ import annotations

import re
import threading
from functools import cached_property
from pathlib import Path

import jinja2

from bot.datafiles import read_yaml
from bot.errors import DataValidationError


class PromptLibrary:
    """The prompt templates and message files of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._messages: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    @cached_property
    def _environment(self) -> jinja2.Environment:
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.directory)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,  # prompts are plain text, never HTML
        )

    def render(self, template: str, **variables: object) -> str:
        """Render ``<directory>/<template>``; errors name the file and the variable."""
        where = self.directory / template
        try:
            return self._environment.get_template(template).render(**variables).strip()
        except jinja2.TemplateNotFound as exc:
            raise DataValidationError(f"prompt file not found: {where}") from exc
        except jinja2.UndefinedError as exc:
            raise DataValidationError(f"prompt {where}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise DataValidationError(f"prompt {where}, line {exc.lineno}: {exc.message}") from exc

    def source(self, template: str) -> str:
        """The raw text of a template (for prompt-echo checks); empty if it is missing."""
        try:
            return (self.directory / template).read_text(encoding="utf-8")
        except OSError:
            return ""

    def messages(self, name: str) -> dict[str, str]:
        """The message file ``<directory>/<name>`` (validated: a mapping of name to text)."""
        with self._lock:
            if name not in self._messages:
                self._messages[name] = self._load_messages(self.directory / name)
            return self._messages[name]

    @staticmethod
    def _load_messages(path: Path) -> dict[str, str]:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise DataValidationError(f"{path}: expected a mapping of message name to text")
        for key, value in data.items():
            if not isinstance(value, str) or not value.strip():
                raise DataValidationError(f"{path}: field '{key}': expected non-empty text")
        return {str(k): str(v) for k, v in data.items()}

    def message(self, file: str, key: str, /, **variables: object) -> str:
        """One message of a message file, rendered with ``variables``."""
        messages = self.messages(file)
        where = self.directory / file
        if key not in messages:
            raise DataValidationError(f"{where}: field '{key}': missing")
        try:
            template = self._environment.from_string(messages[key])
            return re.sub(r"\s+", " ", template.render(**variables))
        except jinja2.UndefinedError as exc:
            raise DataValidationError(f"{where}: field '{key}': {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise DataValidationError(f"{where}: field '{key}': {exc.message}") from exc

    def message_names(self, name: str) -> set[str]:
        return set(self.messages(name))
