"""Knowledge files: articles with YAML front matter, and users' own .md/.txt files.

Every file under ``knowledge/`` that ends in ``.md`` or ``.txt`` (except README files) is a
document. A file that cannot be used (not UTF-8, binary, empty, too large, broken front matter,
a link that leads outside ``knowledge/``) is reported with its name and reason and skipped; the
rest still load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import frontmatter
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

MAX_FILE_BYTES = 2 * 1024 * 1024
DOCUMENT_SUFFIXES = {".md", ".txt", ".markdown"}
# Front matter is YAML between '---' lines at the top, split and loaded by python-frontmatter's
# YAML handler (safe loading). Only YAML: a file that starts with '{' or '+++' is all body.
_YAML = frontmatter.YAMLHandler()
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class DocumentMeta(BaseModel):
    """Front matter of a knowledge file. Articles carry their provenance here."""

    model_config = ConfigDict(extra="allow")

    title: str
    author: str | None = None
    publisher: str | None = None
    published: str | None = None
    origin: str | None = None

    @field_validator("published", mode="before")
    @classmethod
    def _date_to_text(cls, value: object) -> object:
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


@dataclass(frozen=True)
class KnowledgeDocument:
    """A usable knowledge file."""

    doc_id: str  # path relative to the knowledge root, POSIX style
    path: Path
    meta: DocumentMeta
    body: str
    sha256: str  # of the file's bytes

    @property
    def origin(self) -> str:
        return self.meta.origin or self.path.name


@dataclass(frozen=True)
class SkippedFile:
    """A file that could not be used, and why."""

    path: str
    reason: str


class DocumentError(ValueError):
    """A knowledge file is unusable; the message says why."""


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        field = ".".join(str(x) for x in item["loc"]) or "front matter"
        parts.append(f"field '{field}': {item['msg']}")
    return "; ".join(parts)


def _decode(raw: bytes) -> str:
    """A file's bytes as text (UTF-8, BOM dropped, CRLF and no-break spaces normalised)."""
    if len(raw) > MAX_FILE_BYTES:
        raise DocumentError(f"too large ({len(raw):,} bytes; the limit is {MAX_FILE_BYTES:,})")
    if b"\x00" in raw:
        raise DocumentError("binary file (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    text = text.replace("\r\n", "\n").replace("\u00a0", " ")
    if not text.strip():
        raise DocumentError("empty file")
    return text


def _split_front_matter(text: str) -> tuple[dict[str, object], str]:
    """The YAML front matter (``{}`` when there is none) and the body that follows it."""
    opening = _YAML.FM_BOUNDARY.match(text)  # what python-frontmatter's detect() checks
    if not opening:
        return {}, text
    try:
        front, body = _YAML.split(text)
    except ValueError:  # only the opening '---'
        raise DocumentError("broken front matter: no closing '---' line") from None
    try:
        # pure-Python loader: its messages quote the line; without the line break before the
        # closing '---', an error at the end points at the last line of front matter
        loaded = _YAML.load(front.removesuffix("\n"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = ""
        if mark:  # ``front`` starts on the opening '---' line (after any line breaks it took)
            first_line = text.count("\n", 0, opening.end()) + 1
            where = f" at line {first_line + mark.line}"
        raise DocumentError(f"broken front matter{where}: {exc}") from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise DocumentError("broken front matter: expected 'key: value' lines")
    return loaded, body


def parse_document(path: Path, root: Path) -> KnowledgeDocument:
    """Read one knowledge file; raise :class:`DocumentError` naming the problem."""
    raw = path.read_bytes()
    meta_data, body = _split_front_matter(_decode(raw))
    if not body.strip():
        raise DocumentError("no text after the front matter")
    if "title" not in meta_data:
        h1 = _H1.search(body)
        meta_data["title"] = h1.group(1) if h1 else path.stem.replace("-", " ").replace("_", " ")
    try:
        meta = DocumentMeta.model_validate(meta_data)
    except ValidationError as exc:
        raise DocumentError(f"front matter {_format_validation_error(exc)}") from exc
    return KnowledgeDocument(
        doc_id=path.relative_to(root).as_posix(),
        path=path,
        meta=meta,
        body=body.strip() + "\n",
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def iter_candidate_files(root: Path, scope: Path | None = None) -> list[Path]:
    """Document files below ``scope`` (default: ``root``), sorted; never outside ``root``."""
    base = (scope or root).resolve()
    if base.is_file():
        return [base] if base.suffix.lower() in DOCUMENT_SUFFIXES else []
    return sorted(
        p
        for p in base.rglob("*")
        if p.suffix.lower() in DOCUMENT_SUFFIXES
        and p.name.lower() not in {"readme.md", "readme.txt"}
        and not any(part.startswith(".") for part in p.relative_to(base).parts)
    )


def load_documents(
    root: Path, scope: Path | None = None
) -> tuple[list[KnowledgeDocument], list[SkippedFile]]:
    """All usable documents under ``root`` (or ``scope`` inside it), and the files skipped."""
    root = root.resolve()
    documents: list[KnowledgeDocument] = []
    skipped: list[SkippedFile] = []
    for path in iter_candidate_files(root, scope):
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        real = path.resolve()
        if not real.is_relative_to(root):
            skipped.append(SkippedFile(shown, "links outside the knowledge directory"))
            continue
        try:
            documents.append(parse_document(path, root))
        except DocumentError as exc:
            skipped.append(SkippedFile(shown, str(exc)))
        except OSError as exc:
            skipped.append(SkippedFile(shown, f"unreadable: {exc.strerror or exc}"))
    return documents, skipped


def documents_by_origin(root: Path) -> dict[str, KnowledgeDocument]:
    """Usable documents keyed by their origin (the source file name)."""
    return {doc.origin: doc for doc in load_documents(root)[0]}
