"""Token-aware, structure-respecting chunking."""

from __future__ import annotations

from bot.knowledge.chunking import chunk_text, split_blocks
from bot.knowledge.documents import load_documents
from bot.llm.tokens import count_tokens

from .conftest import ARTICLES_DIR

BODY = """# Title

Intro paragraph one.

## Steps

1. Listen patiently. And listen some more. Keep listening until the person feels heard.
2. Accept what the individual says,
   even if you believe it is wrong.
3. Be empathetic.

## Closing

Last words here.
"""


def test_blocks_follow_sections_and_list_items():
    blocks = split_blocks(BODY, "Title")
    assert [b.section for b in blocks] == ["Title", "Steps", "Steps", "Steps", "Closing"]
    assert blocks[2].text.startswith("2. Accept") and "even if you believe" in blocks[2].text


def test_chunks_never_mix_sections_and_respect_budget():
    chunks = chunk_text(BODY, "Title", max_tokens=30)
    assert all(c.tokens <= 30 for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.section in {"Title", "Steps", "Closing"}
    steps = [c for c in chunks if c.section == "Steps"]
    joined = "\n\n".join(c.text for c in steps)
    assert (
        "1. Listen patiently. And listen some more. Keep listening until the person feels heard."
        in joined
    )


def test_small_blocks_are_packed_together():
    chunks = chunk_text(BODY, "Title", max_tokens=200)
    assert len(chunks) == 3  # one per section


def test_oversized_block_is_split_at_sentences():
    long_paragraph = " ".join(f"Sentence number {i} talks about listening." for i in range(60))
    chunks = chunk_text(long_paragraph, "T", max_tokens=50)
    assert len(chunks) > 3
    assert all(c.tokens <= 50 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks[:-1])


def test_numbered_steps_of_the_real_article_stay_whole():
    doc = next(d for d in load_documents(ARTICLES_DIR.parent)[0] if d.origin.startswith("004_"))
    chunks = chunk_text(doc.body, doc.meta.title, max_tokens=160)
    for step in [
        line for line in doc.body.splitlines() if line[:2] in {"1.", "2.", "3.", "4.", "5.", "6."}
    ]:
        if count_tokens(step) <= 160:
            assert any(step in c.text for c in chunks), step[:40]
