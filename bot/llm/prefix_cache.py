"""Per-session prefix reuse for the embedded model: llama-cpp-python's RAM cache, bounded.

llama.cpp keeps one KV cache. When sessions take turns, each turn overwrites the previous
session's prefix, and the next turn of that session must read its whole prompt again (about
12 s for a 500-token prompt on 2 cores, against about 1 s with the prefix reused). llama-cpp-
python's ``LlamaRAMCache`` saves the state after each completion, keyed by its tokens, and
restores the saved state with the longest common prefix before the next one, so each session
finds its own prefix again.

Two fixes make it fit for a shared server (:class:`BoundedPrefixCache`):

* ``Llama.save_state`` copies one row of logits per evaluated token (up to 512 × 151,936
  floats, about 300 MB) although a restored prefix is always re-decoded from its last token;
  only the last row is kept here.
* ``LlamaRAMCache`` counts only the KV bytes against its capacity; here every kept byte counts,
  so ``COACHBOT_PREFIX_CACHE_MB`` really bounds the memory. The least recently used state goes
  first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class PrefixCacheReport:
    """What the prefix cache holds now."""

    entries: int
    bytes_held: int
    capacity_bytes: int
    lookups: int
    stores: int
    evictions: int

    def describe(self) -> str:
        return (
            f"{self.entries} saved prefixes, {self.bytes_held / MEGABYTE:.0f} of "
            f"{self.capacity_bytes / MEGABYTE:.0f} MB; {self.lookups} lookups, "
            f"{self.stores} saves, {self.evictions} evicted"
        )


def state_bytes(state: Any) -> int:
    """The memory one saved llama.cpp state holds (KV data, logits row, token ids)."""
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


def make_prefix_cache(capacity_mb: int) -> Any:
    """A :class:`BoundedPrefixCache` of ``capacity_mb`` (llama_cpp is imported only here)."""
    from llama_cpp import LlamaRAMCache

    class BoundedPrefixCache(LlamaRAMCache):  # type: ignore[misc]
        """``LlamaRAMCache`` that keeps one logits row per state and counts every byte."""

        def __init__(self, capacity_bytes: int) -> None:
            super().__init__(capacity_bytes=capacity_bytes)
            self.lookups = 0
            self.stores = 0
            self.evictions = 0
            self._bytes = 0

        @property
        def cache_size(self) -> int:
            return self._bytes

        def __getitem__(self, key: Any) -> Any:
            self.lookups += 1
            return super().__getitem__(key)

        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = value.scores[-1:].copy()
            key = tuple(key)
            if key in self.cache_state:
                self._bytes -= state_bytes(self.cache_state.pop(key))
            self.cache_state[key] = value
            self._bytes += state_bytes(value)
            self.stores += 1
            while self._bytes > self.capacity_bytes and self.cache_state:
                _, dropped = self.cache_state.popitem(last=False)
                self._bytes -= state_bytes(dropped)
                self.evictions += 1

        def clear(self) -> None:
            """Forget every saved prefix."""
            self.cache_state.clear()
            self._bytes = 0

        def report(self) -> PrefixCacheReport:
            return PrefixCacheReport(
                entries=len(self.cache_state),
                bytes_held=self._bytes,
                capacity_bytes=self.capacity_bytes,
                lookups=self.lookups,
                stores=self.stores,
                evictions=self.evictions,
            )

    return BoundedPrefixCache(capacity_bytes=capacity_mb * MEGABYTE)
