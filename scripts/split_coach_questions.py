"""Split a second round of authors' coach questions into train / dev / test-2 (60/20/20).

The authors (helpers briefed from the five articles alone, never the index, prompts or code)
wrote agent questions tied to the article sentence(s) that answer them, in the format of
``evals/data/coach/train.yaml``. The split is by a hash of the question's id, so re-running it
is stable. Train and dev items are appended to ``train.yaml`` and ``dev.yaml``; the test items
form ``test-2.yaml``, a second frozen split (tests/test_labelled_sets.py checks its hash). Every
answer quote is checked against its article before anything is written.

Usage: .venv/bin/python scripts/split_coach_questions.py AUTHOR_FILE.yaml [...]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

from bot.config import PROJECT_ROOT
from bot.knowledge.metrics import normalise

COACH = PROJECT_ROOT / "evals" / "data" / "coach"
SEEDS = PROJECT_ROOT.parent / "shared" / "seeds"
TEST_HEADER = (
    "# Coach questions, TEST-2 split (round 2: authors m, n): FROZEN: nobody tunes on it;\n"
    "# tests/test_labelled_sets.py checks its hash. Written from the articles alone, each tied to\n"
    "# the sentence(s) that answer it (scripts/split_coach_questions.py).\n"
)
QTYPES = {"yes_no", "what_to_say", "how_why", "follow_up", "out_of_scope"}


def split_of(question_id: str) -> str:
    bucket = int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 80 else "test-2"


def problems(item: dict, articles: dict[str, str]) -> list[str]:
    """What is wrong with one item (empty when it is valid)."""
    found = []
    if item.get("qtype") not in QTYPES:
        found.append(f"qtype {item.get('qtype')!r}")
    if item.get("qtype") == "yes_no" and item.get("expected_answer") not in ("yes", "no"):
        found.append("expected_answer must be yes or no")
    if item.get("qtype") == "out_of_scope":
        return found
    text = articles.get(str(item.get("article")))
    if text is None:
        return [*found, f"unknown article {item.get('article')!r}"]
    for quote in item.get("answer_quotes") or ["<none>"]:
        if normalise(quote) not in text:
            found.append(f"quote not in its article: {quote[:60]!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    articles = {p.name: normalise(p.read_text(encoding="utf-8")) for p in SEEDS.glob("*.txt")}
    known = {
        i["id"]
        for split in ("train", "dev", "test")
        for i in yaml.safe_load((COACH / f"{split}.yaml").read_text(encoding="utf-8"))
    }
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test-2": []}
    for path in args.files:
        for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            wrong = problems(item, articles)
            if wrong or item["id"] in known:
                print(f"{path}: {item.get('id')}: {wrong or 'id already used'}", file=sys.stderr)
                return 1
            item = {k: v for k, v in item.items() if v not in (None, "")}
            splits[split_of(item["id"])].append(item)
    for name in ("train", "dev"):
        with (COACH / f"{name}.yaml").open("a", encoding="utf-8") as out:
            out.write("# Round 2 (authors m, n), appended by scripts/split_coach_questions.py\n")
            out.write(yaml.safe_dump(splits[name], allow_unicode=True, sort_keys=False, width=100))
    (COACH / "test-2.yaml").write_text(
        TEST_HEADER
        + yaml.safe_dump(splits["test-2"], allow_unicode=True, sort_keys=False, width=100),
        encoding="utf-8",
    )
    print({k: len(v) for k, v in splits.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
