"""Prompt templates kept as files under ``prompts/`` (Jinja2, strict about missing variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from bot.config import get_settings
from bot.errors import DataValidationError


@lru_cache(maxsize=8)
def _environment(prompts_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(prompts_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # prompts are plain text, never HTML
    )


def render_prompt(template: str, prompts_dir: Path | None = None, **variables: object) -> str:
    """Render ``prompts/<template>`` with ``variables``; errors name the file and the variable."""
    directory = (prompts_dir or get_settings().prompts_dir).resolve()
    try:
        loaded = _environment(directory).get_template(template)
        return loaded.render(**variables).strip()
    except jinja2.TemplateNotFound as exc:
        raise DataValidationError(f"prompt file not found: {directory / template}") from exc
    except jinja2.UndefinedError as exc:
        raise DataValidationError(f"prompt {directory / template}: {exc.message}") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise DataValidationError(
            f"prompt {directory / template}, line {exc.lineno}: {exc.message}"
        ) from exc
