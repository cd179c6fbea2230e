"""Split authors' labelled customer-voice lines into train / dev / test (60/20/20).

Each author (helpers briefed from the articles alone, never the code or prompts) wrote lines an
upset customer says and lines only an agent or an assistant would say, labelled ``customer`` or
``agent``. The split is by a hash of author and text, so re-running it is stable; the test split
is frozen by hash in tests/test_labelled_sets.py. Every item is validated by
:func:`bot.roleplay.voice.load_voice_lines` (the loader every report uses) before anything is
written.

Usage: .venv/bin/python scripts/split_customer_voice.py AUTHOR_FILE.yaml [...]
       (the author id is the file name's last part: author-k.yaml -> k)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import yaml

from bot.config import PROJECT_ROOT
from bot.errors import DataValidationError
from bot.roleplay.voice import load_voice_lines

VOICE = PROJECT_ROOT / "evals" / "data" / "customer_voice"
HEADER = (
    "# Customer-voice labelled lines, {split} split{frozen}. Written by helpers briefed from the\n"
    "# articles alone (never the code, prompts or catalogue); see evals/data/README.md.\n"
)


def split_of(author: str, text: str) -> str:
    bucket = int(hashlib.sha256(f"{author}|{text}".encode()).hexdigest(), 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 80 else "test"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for path in args.files:
        author = path.stem.split("-")[-1]
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        with tempfile.TemporaryDirectory() as tmp:  # validate with the product's loader
            check = Path(tmp) / path.name
            check.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
            try:
                load_voice_lines(check)
            except DataValidationError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                return 1
        for item in raw:
            text = " ".join(str(item["text"]).split())
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            kept = {"text": text, "label": item["label"], "kind": item.get("kind", "")}
            kept.update({k: item[k] for k in ("setting", "note") if item.get(k)})
            splits[split_of(author, text)].append({**kept, "author": author})
    VOICE.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        frozen = " (frozen: tests/test_labelled_sets.py checks its hash)" if split == "test" else ""
        body = yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=100)
        (VOICE / f"{split}.yaml").write_text(HEADER.format(split=split, frozen=frozen) + body)
        counts = {label: sum(i["label"] == label for i in items) for label in ("customer", "agent")}
        print(f"{split}: {len(items)} lines {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
