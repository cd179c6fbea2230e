"""Token-aware chunking that respects Markdown structure.

A document is cut into blocks (paragraphs, list items, headings set the section). Blocks of one
section are packed into chunks of at most ``max_tokens`` (cl100k_base tokens). A block is never
split unless it alone exceeds the budget, so numbered steps and paragraphs stay whole; an
oversized block is split at sentence boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from bot.llm.tokens import count_tokens, get_encoding

CHUNKER_VERSION = "md-blocks-1"
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*+•])\s+")


@dataclass(frozen=True)
class Block:
    text: str
    section: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a document ready to embed."""

    text: str
    section: str
    position: int  # 0-based order within the document
    tokens: int


def split_blocks(body: str, title: str) -> list[Block]:
    """Paragraphs and list items with the section (nearest heading below the title) they sit in."""
    blocks: list[Block] = []
    section = title
    current: list[str] = []

    def flush() -> None:
        if current:
            text = "\n".join(current).strip()
            if text:
                blocks.append(Block(text, section))
            current.clear()

    for line in body.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, name = len(heading.group(1)), heading.group(2).strip()
            section = title if level == 1 else name
            continue
        if not line.strip():
            flush()
            continue
        if _LIST_ITEM.match(line):
            flush()  # each list item is its own block
        current.append(line.rstrip())
    flush()
    return blocks


def _split_oversized(text: str, max_tokens: int) -> list[str]:
    splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name=get_encoding().name,
        chunk_size=max_tokens,
        chunk_overlap=min(24, max_tokens // 8),
        separators=["\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
        keep_separator="end",
    )
    return [piece.strip() for piece in splitter.split_text(text) if piece.strip()]


def chunk_text(body: str, title: str, max_tokens: int = 160) -> list[Chunk]:
    """Cut a document body into section-aware chunks of at most ``max_tokens`` tokens."""
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    pieces: list[tuple[str, str, int]] = []  # (text, section, tokens)
    for block in split_blocks(body, title):
        n = count_tokens(block.text)
        if n <= max_tokens:
            pieces.append((block.text, block.section, n))
        else:
            for part in _split_oversized(block.text, max_tokens):
                pieces.append((part, block.section, count_tokens(part)))

    chunks: list[Chunk] = []
    buffer: list[str] = []
    buffer_tokens = 0
    buffer_section = ""

    def emit() -> None:
        nonlocal buffer_tokens
        if buffer:
            text = "\n\n".join(buffer)
            chunks.append(Chunk(text, buffer_section, len(chunks), count_tokens(text)))
            buffer.clear()
            buffer_tokens = 0

    for text, section, n in pieces:
        # "\n\n" between blocks costs about one token.
        if buffer and (section != buffer_section or buffer_tokens + n + 1 > max_tokens):
            emit()
        if not buffer:
            buffer_section = section
        buffer.append(text)
        buffer_tokens += n + (1 if len(buffer) > 1 else 0)
    emit()
    return chunks
