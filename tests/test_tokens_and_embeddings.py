"""tiktoken offline, and the embedded MiniLM embeddings (LangChain and Chroma)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bot.llm.embeddings import CoachbotEmbeddingFunction, local_embeddings
from bot.llm.tokens import count_tokens, get_encoding, seed_tiktoken_cache


def test_cl100k_counts_offline():
    assert count_tokens("Let's solve this together.") == len(
        get_encoding("cl100k_base").encode("Let's solve this together.")
    )
    assert count_tokens("hello world") == 2


def test_plain_cl100k_name_works_after_seeding(tmp_path):
    code = (
        "import tiktoken, bot.llm.tokens as t; t.seed_tiktoken_cache();"
        "print(len(tiktoken.get_encoding('cl100k_base').encode('hello world')))"
    )
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "2"
    assert any(tmp_path.iterdir()), "the cache was seeded"


def test_seed_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert seed_tiktoken_cache() == tmp_path
    assert seed_tiktoken_cache() == tmp_path
    assert len(list(tmp_path.iterdir())) == 1


def test_embedding_shape_and_norm():
    vectors = local_embeddings().embed_array(["I hear you.", "", "x " * 600])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_batch_order_is_preserved():
    texts = ["short", "a much longer sentence about a damaged parcel", "mid length text"]
    together = local_embeddings().embed_array(texts)
    alone = np.stack([local_embeddings().embed_array([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-3)


def test_nearest_neighbours_are_semantic():
    emb = local_embeddings()
    query = emb.embed_query("Please just calm down, sir.")
    candidates = [
        "Relax, there is no need to get so worked up.",
        "Can I have your order number, please?",
        "Our opening hours are nine to five.",
    ]
    scores = np.array(emb.embed_documents(candidates)) @ np.array(query)
    assert int(np.argmax(scores)) == 0


def test_chroma_embedding_function_round_trips_config():
    ef = CoachbotEmbeddingFunction()
    rebuilt = CoachbotEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == {"provider": "local", "model": "all-minilm-l6-v2-int8"}
    assert CoachbotEmbeddingFunction.name() == "coachbot"
    out = rebuilt(["hello there"])
    assert len(out) == 1 and len(out[0]) == 384


@pytest.mark.parametrize("provider", ["local"])
def test_collection_opens_in_a_fresh_process(tmp_path, provider):
    """Chroma stores the embedding function's name; importing bot must be enough to reopen."""
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path))
    col = client.get_or_create_collection(
        "coachbot-test", embedding_function=CoachbotEmbeddingFunction()
    )
    col.add(ids=["a"], documents=["You have every right to feel upset."])
    code = (
        "import chromadb, bot.llm.embeddings;"
        f"c = chromadb.PersistentClient(path={str(tmp_path)!r}).get_collection('coachbot-test');"
        "print(c.query(query_texts=['you are right to be upset'], n_results=1)['ids'][0][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "a"


def test_openai_embeddings_count_tokens_offline(tmp_path):
    """OpenAI embeddings split texts with cl100k_base; without the seeded cache tiktoken tries
    to download it (and fails offline before any API call). A fresh process, a fresh cache."""
    script = (
        "from bot.config import Settings\n"
        "from bot.llm.embeddings import make_embeddings\n"
        "import tiktoken\n"
        "s = Settings(_env_file=None, embeddings='openai', OPENAI_API_KEY='sk-test')\n"
        "make_embeddings(s)\n"
        "print(len(tiktoken.get_encoding('cl100k_base').encode('hello there')))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip() == "2"
