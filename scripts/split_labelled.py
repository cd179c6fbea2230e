"""Split a new author's labelled guidance lines into train / dev / test (60/20/20).

The split is by a hash of author, text and context, as for the first four authors. Train and
dev lines are appended to evals/data/guidance/{train,dev}.yaml; test lines go to a NEW frozen
file (``--test-out``), since evals/data/guidance/test.yaml is frozen by hash. Lines already in
any split (same text and context) are skipped, and every label is checked against the label
vocabulary (the catalogue's behaviour ids, by the loader every report uses) before anything
is written.

Usage: .venv/bin/python scripts/split_labelled.py --test-out evals/data/guidance/test-2.yaml
       AUTHOR_FILE.yaml [...]   (the author id is the file name's last part: author-g.yaml -> g)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

from bot.config import PROJECT_ROOT
from bot.errors import DataValidationError
from bot.guidance.catalogue import load_catalogue
from bot.guidance.metrics import load_labelled

GUIDANCE = PROJECT_ROOT / "evals" / "data" / "guidance"
ACTS = {
    "factual_question", "open_question", "anything_else", "reflection", "empathy", "apology",
    "offer", "ask_solution", "wait_request", "closing", "explanation", "refusal", "other",
}  # fmt: skip
TEST_HEADER = (
    "# Guidance labelled set, an extra TEST split (frozen: tests/test_labelled_sets.py checks its\n"
    "# hash). Written by authors {authors} from the articles alone; see README.md.\n"
)
FIELDS = ("text", "context", "expect", "act", "category", "note", "author")


def split_of(author: str, text: str, context: str) -> str:
    bucket = int(hashlib.sha256(f"{author}|{text}|{context}".encode()).hexdigest(), 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 80 else "test"


def load(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or [] if path.exists() else []


def checked(item: dict, where: str) -> dict:
    """The item's fields to keep (its labels were validated by ``load_labelled``)."""
    if item.get("act") not in ACTS:
        raise SystemExit(f"{where}.act: unknown act {item.get('act')!r}")
    return {k: item[k] for k in FIELDS if item.get(k) not in (None, "")} | {
        "expect": list(item.get("expect") or [])
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--test-out", type=Path, required=True)
    args = parser.parse_args(argv)
    ids = set(load_catalogue(PROJECT_ROOT / "knowledge" / "guidance.yaml").ids)
    seen = {f"{i['text']}|{i.get('context', '')}" for p in GUIDANCE.glob("*.yaml")
            for i in load(p)}  # fmt: skip
    new: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for path in args.files:
        author = path.stem.rsplit("-", 1)[-1]
        try:  # text, labels and category, as every report reads them
            load_labelled(path, ids)
        except DataValidationError as exc:
            raise SystemExit(str(exc)) from exc
        for n, raw in enumerate(load(path)):
            item = checked(raw | {"author": author}, f"{path}: [{n}]")
            key = f"{item['text']}|{item.get('context', '')}"
            if key not in seen:
                seen.add(key)
                new[split_of(author, item["text"], item.get("context", ""))].append(item)
    if not args.test_out.exists():
        authors = ", ".join(p.stem.rsplit("-", 1)[-1] for p in args.files)
        args.test_out.write_text(TEST_HEADER.format(authors=authors), encoding="utf-8")
    for name, out in (("train", GUIDANCE / "train.yaml"), ("dev", GUIDANCE / "dev.yaml"),
                      ("test", args.test_out)):  # fmt: skip
        if new[name]:  # appended: the files' headers and earlier lines stay byte for byte
            with out.open("a", encoding="utf-8") as handle:
                handle.write(yaml.safe_dump(new[name], sort_keys=False, allow_unicode=True,
                                            width=100))  # fmt: skip
    added = {name: len(items) for name, items in new.items()}
    print(added)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
