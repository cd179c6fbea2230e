"""Passage-level retrieval on the labelled coach questions: hit@1/3/5 and MRR per split and
retrieval configuration.

A hit is a returned passage that contains one of the question's answer quotes (normalised
text); out-of-scope questions are left out. "cited" is the share of questions whose coach
citations (the passages of the context sentences the coach picks from its top 4,
``bot.coach.context.select_context``) include an answering passage: the citations are fixed
before the model writes, so no chat model is needed. Follow-ups are searched as the coach
searches them (the earlier question joined on, ``bot.coach.answer_text.rewrite_query``). The
index is built from the shipped knowledge/ in a temporary directory, with the reviewed passage
questions (``knowledge/passage_questions.yaml``) and no chat model.

Usage: .venv/bin/python scripts/retrieval_report.py [--splits train,dev] [--json OUT]
       [--misses] [--rrf-k K] [--question-weight W] [--depth 30] [--generated]
The test split is frozen: score it once, for the chosen configuration (--splits test --only
chosen).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from bot.coach.answer_text import rewrite_query
from bot.coach.context import select_context
from bot.config import PROJECT_ROOT, Settings
from bot.datafiles import load_yaml_model
from bot.knowledge import KnowledgeIndex
from bot.knowledge.hybrid import RetrievalConfig
from bot.knowledge.metrics import RetrievalScores, answer_rank, answers
from bot.knowledge.questions import (
    PassageQuestions,
    QuestionSource,
    ReviewedQuestions,
    content_hash,
)
from bot.llm.embeddings import unit_vectors
from bot.prompts import PromptLibrary

DATA = PROJECT_ROOT / "evals" / "data" / "coach"
DEPTH = 10  # passages asked for per question (MRR looks this deep)
COACH_K, COACH_SENTENCES = 4, 2  # what the coach retrieves and shows (bot/coach/coach.py)
CONFIGS: dict[str, tuple[str, ...]] = {
    "dense (before)": ("dense:chunk",),
    "bm25": ("lexical:chunk",),
    "hybrid chunks": ("dense:chunk", "lexical:chunk"),
    "hybrid windows": ("dense:window", "lexical:window"),
    "hybrid chunks+windows": ("dense:chunk", "lexical:chunk", "dense:window", "lexical:window"),
    "questions only": ("dense:question", "lexical:question"),
    "hybrid chunks+questions": (
        "dense:chunk", "lexical:chunk", "dense:question", "lexical:question",
    ),
    "hybrid windows+questions": (
        "dense:window", "lexical:window", "dense:question", "lexical:question",
    ),
    "chosen": RetrievalConfig().lists,
}  # fmt: skip


def load_split(split: str) -> list[dict[str, Any]]:
    """The in-scope questions of a split, with the query the coach would search."""
    items = yaml.safe_load((DATA / f"{split}.yaml").read_text(encoding="utf-8"))
    out = []
    for item in items:
        if not item.get("answer_quotes"):
            continue
        history = (
            [{"role": "user", "content": item["previous_question"]}]
            if item.get("previous_question")
            else None
        )
        out.append({**item, "query": rewrite_query(item["question"], history)[0]})
    return out


class GeneratedQuestions:
    """The model's questions as generated, before review (what a company's document gets)."""

    def __init__(self, path: Path) -> None:
        data = load_yaml_model(path, ReviewedQuestions, "passages")
        self.by_hash = {p.hash: p.generated for p in data.passages}
        self.notices: list[str] = []

    def questions(self, text: str, title: str, section: str) -> list[str]:
        return self.by_hash.get(content_hash(text), [])


def build_index(tmp: Path, generated: bool = False) -> KnowledgeIndex:
    settings = Settings(
        _env_file=None,
        data_dir=tmp / "data",
        knowledge_dir=PROJECT_ROOT / "knowledge",
        embeddings="local",
        chroma_host=None,
        chroma_path=None,
    )
    shipped = settings.knowledge_dir / "passage_questions.yaml"
    questions: QuestionSource = (
        GeneratedQuestions(shipped)
        if generated
        else PassageQuestions(PromptLibrary(settings.prompts_dir), reviewed=[shipped])
    )
    index = KnowledgeIndex(settings, questions=questions)
    index.ingest()
    return index


def score(
    index: KnowledgeIndex, items: list[dict[str, Any]], config: RetrievalConfig
) -> tuple[RetrievalScores, list[dict[str, Any]]]:
    scores, misses = RetrievalScores(), []
    embed = functools.partial(unit_vectors, index.embeddings)
    for item in items:
        hits = index.search(item["query"], k=DEPTH, config=config)
        rank = answer_rank([h.text for h in hits], item["answer_quotes"])
        citations, _ = select_context(embed, item["query"], hits[:COACH_K], COACH_SENTENCES)
        scores.cited.append(any(answers(c.text, item["answer_quotes"]) for c in citations))
        scores.add(rank)
        if rank is None or rank > 3:
            misses.append({"id": item["id"], "rank": rank, "query": item["query"],
                           "top": [h.text[:80] for h in hits[:3]]})  # fmt: skip
    return scores, misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", default="train,dev")
    parser.add_argument("--only", help="comma-separated configuration names")
    parser.add_argument("--rrf-k", type=float, default=RetrievalConfig().rrf_k)
    parser.add_argument(
        "--question-weight", type=float, default=RetrievalConfig().weights["dense:question"]
    )
    parser.add_argument("--depth", type=int, default=RetrievalConfig().depth)
    parser.add_argument("--misses", action="store_true", help="print the questions missed at 3")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument(
        "--generated",
        action="store_true",
        help="index the model's questions as generated, not the reviewed ones",
    )
    args = parser.parse_args()
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    names = [n.strip() for n in args.only.split(",")] if args.only else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")

    console = Console()
    table = Table("split", "configuration", "questions", "hit@1", "hit@3", "hit@5", "MRR", "cited")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="coachbot-retrieval-") as tmp:
        index = build_index(Path(tmp), generated=args.generated)
        kind = "generated" if args.generated else "reviewed"
        for split in splits:
            items = load_split(split)
            for name in names:
                weight = args.question_weight
                config = RetrievalConfig(
                    lists=CONFIGS[name], rrf_k=args.rrf_k, depth=args.depth,
                    weights={"dense:question": weight, "lexical:question": weight},
                )  # fmt: skip
                scores, misses = score(index, items, config)
                row = {"split": split, "configuration": name, **scores.to_dict(),
                       "indexed_questions": kind}  # fmt: skip
                results.append(row)
                columns = ("questions", "hit@1", "hit@3", "hit@5", "mrr", "cited")
                table.add_row(split, name, *(str(row[c]) for c in columns))
                if args.misses:
                    for miss in misses:
                        console.print(f"[dim]{split} {name}[/dim] {miss}", markup=True)
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
