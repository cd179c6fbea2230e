"""Loading YAML data files into pydantic models, with errors that name the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bot.errors import DataValidationError

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[object, ...]) -> str:
    """``("behaviours", 3, "patterns")`` → ``behaviours[3].patterns``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def read_yaml(path: Path) -> object:
    """Parse a YAML file; unreadable or invalid files raise DataValidationError naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise DataValidationError(f"{path}: invalid YAML: {exc}") from exc


def load_yaml_model(path: Path, model: type[M], expected: str) -> M:
    """Load ``path`` as one ``model``; ``expected`` describes the top level for the error."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DataValidationError(f"{path}: expected a mapping of {expected}")
    return validate_model(path, data, model)


def validate_model(path: Path, data: Any, model: type[M]) -> M:
    """``data`` (read from ``path``) as a ``model``; the error names the file and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DataValidationError(
            f"{path}: field '{field_path(first['loc'])}': {first['msg']}{more}"
        ) from exc
