"""The guidance catalogue and engine: validation, citations, scope rules, accuracy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import main as cli
from bot.config import PROJECT_ROOT
from bot.errors import DataValidationError
from bot.guidance.engine import DetectionContext, GuidanceEngine, default_engine, load_catalogue
from bot.guidance.metrics import evaluate, load_labelled
from bot.knowledge.documents import documents_by_origin

CATALOGUE = PROJECT_ROOT / "knowledge" / "guidance.yaml"
DATA = Path(__file__).parent / "data"

REQUIRED = {
    "do": {
        "listen_actively", "reflect_back", "validate_feelings", "specific_apology",
        "open_question", "ask_fair_solution", "collaborative_language", "invite_perspective",
        "calm_warm_tone", "follow_up",
    },
    "avoid": {
        "tell_to_calm_down", "as_i_told_you", "point_to_policy_document", "not_my_job",
        "transfer_runaround", "excuses_blame", "generic_apology", "dismiss_minimise",
        "flat_refusal", "argue_contradict",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> GuidanceEngine:
    return default_engine(CATALOGUE)


def _ids(engine: GuidanceEngine, text: str, context: DetectionContext | None = None) -> set[str]:
    return {d.behaviour_id for d in engine.detect(text, context)}


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip()


# ----------------------------------------------------------------- the catalogue


def test_catalogue_covers_the_required_behaviours():
    catalogue = load_catalogue(CATALOGUE)
    for kind, ids in REQUIRED.items():
        assert ids <= {b.id for b in catalogue.behaviours if b.kind == kind}, kind


def test_every_cited_passage_occurs_in_its_article():
    catalogue = load_catalogue(CATALOGUE)
    articles = documents_by_origin(PROJECT_ROOT / "knowledge")
    for behaviour in catalogue.behaviours:
        article = articles.get(behaviour.source.origin)
        assert article is not None, f"{behaviour.id}: unknown origin {behaviour.source.origin}"
        assert _collapse(behaviour.source.quote) in _collapse(article.body), behaviour.id


def test_every_example_is_credited_to_its_own_behaviour(engine):
    misses = []
    for behaviour in engine.catalogue.behaviours:
        for example in behaviour.examples:
            if behaviour.id not in _ids(engine, example):
                misses.append((behaviour.id, example))
    total = sum(len(b.examples) for b in engine.catalogue.behaviours)
    # A linear classifier over 384-d embeddings fits about 96% of its own examples.
    assert len(misses) <= 0.05 * total, misses[:10]


def _write_catalogue(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(CATALOGUE.read_text())
    mutate(data)
    path = tmp_path / "guidance.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["behaviours"][2].update(kind="maybe"), "behaviours[2].kind"),
        (lambda d: d["behaviours"][0]["patterns"].append("(unclosed"), "behaviours[0].patterns"),
        (lambda d: d["behaviours"][1].pop("source"), "behaviours[1].source"),
        (lambda d: d["behaviours"][3].update(examples=["only one"]), "behaviours[3].examples"),
        (
            lambda d: d["behaviours"][4].update(id=d["behaviours"][5]["id"]),
            "duplicate behaviour id",
        ),
        (lambda d: d["behaviours"][0].update(colour="red"), "behaviours[0].colour"),
    ],
)
def test_invalid_catalogue_errors_name_file_and_field(tmp_path, mutate, message):
    path = _write_catalogue(tmp_path, mutate)
    with pytest.raises(DataValidationError) as err:
        load_catalogue(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_malformed_yaml_is_named(tmp_path):
    path = tmp_path / "guidance.yaml"
    path.write_text("behaviours: [unclosed\n")
    with pytest.raises(DataValidationError, match="invalid YAML"):
        load_catalogue(path)


# ----------------------------------------------------------------- detection rules


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("Calm down, sir.", {"tell_to_calm_down"}, set()),
        ("I would never tell you to calm down.", set(), {"tell_to_calm_down"}),
        ("You were told to 'calm down'? I'm so sorry.", set(), {"tell_to_calm_down"}),
        ("Your last agent said it was not his job?", set(), {"not_my_job"}),
        ("You're right to be angry about this.", {"validate_feelings"}, set()),
        ("Can I have your order number?", set(), None),
        (
            "I understand why you're upset, but as I told you, it's in our terms and conditions.",
            {"validate_feelings", "as_i_told_you", "point_to_policy_document"},
            set(),
        ),
        ("Why don't you tell me more about what happened?", {"open_question"}, set()),
        # A conceded point the agent then turns from is not their own dismissal.
        (
            "I know it's just a small thing to some people, but it clearly matters to you.",
            set(),
            {"dismiss_minimise"},
        ),
        (
            "I realise it's only a tenner, but the principle matters to you.",
            set(),
            {"dismiss_minimise"},
        ),
        ("It's only a parcel.", {"dismiss_minimise"}, set()),
        ("Sure, it's only a tenner.", {"dismiss_minimise"}, set()),
        ("I know you're upset, but calm down.", {"tell_to_calm_down"}, set()),
    ],
)
def test_detection_rules(engine, text, present, absent):
    found = _ids(engine, text)
    if absent is None:
        assert found == set()
        return
    assert present <= found, found
    assert not (absent & found), found


def test_detections_carry_evidence_and_kind(engine):
    text = "Okay, just calm down and let's sort it."
    detection = next(d for d in engine.detect(text) if d.behaviour_id == "tell_to_calm_down")
    assert detection.kind == "avoid"
    assert text[detection.start : detection.end] == detection.evidence
    assert "calm down" in detection.evidence.lower()
    assert 0 < detection.confidence <= 1


def test_context_helps_spot_reflecting_back(engine):
    customer = "My router has dropped out every evening this week and I work from home."
    line = "So your router keeps dropping out in the evenings, and you work from home."
    assert "reflect_back" in _ids(engine, line, DetectionContext(customer_last=customer))


def test_engine_without_embeddings_uses_patterns_only():
    engine = GuidanceEngine(load_catalogue(CATALOGUE), embeddings=None)
    assert {d.method for d in engine.detect("Relax, it's not my department.")} == {"pattern"}


def test_empty_line_detects_nothing(engine):
    assert engine.detect("   ") == []


# ----------------------------------------------------------------- accuracy

# Thresholds from the issue: avoid-behaviours caught with recall and precision >= 0.9,
# do-behaviours credited with recall >= 0.85, neutral lines trigger nothing. The tuning set
# (guidance_labelled.yaml) must meet them; the held-out set, written independently and never
# used for tuning, is held to the same bar minus a small allowance for unseen phrasing.
SETS = {
    "guidance_labelled.yaml": {"avoid_p": 0.9, "avoid_r": 0.9, "do_r": 0.85, "neutral": 0},
    "guidance_heldout.yaml": {"avoid_p": 0.9, "avoid_r": 0.75, "do_r": 0.75, "neutral": 1},
}


@pytest.mark.parametrize("name", sorted(SETS))
def test_accuracy_on_labelled_sets(engine, name):
    lines = load_labelled(DATA / name, set(engine.catalogue.ids))
    assert len(lines) >= 70
    result = evaluate(engine, lines)
    bar = SETS[name]
    avoid, do = result.by_kind["avoid"], result.by_kind["do"]
    report = json.dumps(result.errors[:15], indent=1)
    assert avoid.precision >= bar["avoid_p"], report
    assert avoid.recall >= bar["avoid_r"], report
    assert do.recall >= bar["do_r"], report
    assert len(result.neutral_triggered) <= bar["neutral"], result.neutral_triggered


def test_labelled_sets_do_not_copy_catalogue_examples(engine):
    examples = {e.lower() for b in engine.catalogue.behaviours for e in b.examples}
    examples |= {e.lower() for e in engine.catalogue.neutral_examples}
    for name in SETS:
        for line in yaml.safe_load((DATA / name).read_text()):
            assert line["text"].lower() not in examples, line["text"]


# ----------------------------------------------------------------- CLI


def test_check_command_json_cites_sources():
    result = CliRunner().invoke(cli.app, ["check", "Calm down, it's not my job.", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_id = {d["behaviour_id"]: d for d in data["detections"]}
    assert {"tell_to_calm_down", "not_my_job"} <= set(by_id)
    source = by_id["tell_to_calm_down"]["source"]
    assert source["origin"] == "000_de7749b5180952da.txt"
    assert "calm down" in source["quote"] and source["title"].startswith("Understanding")


def test_check_command_neutral_line():
    result = CliRunner().invoke(cli.app, ["check", "Can I have your order number?"])
    assert result.exit_code == 0 and "No guidance behaviour detected" in result.stdout


def test_forgetting_old_sentence_vectors_never_loses_those_a_call_needs(engine):
    """A cold start trains the line classifier over thousands of sentences; when the vector
    memory filled up mid-call it was cleared, and the call's already-known vectors were lost
    (KeyError: "That's not acceptable,")."""
    engine.forget_vectors()
    known = engine.embed(["I hear you."])
    filler = np.zeros_like(known[0])
    engine._vectors.update({f"filler {n}": filler for n in range(engine._vector_memory)})
    vectors = engine.embed(["I hear you.", "What happened next?"])
    assert vectors is not None and vectors.shape[0] == 2
    assert np.allclose(vectors[0], known[0])
    engine.forget_vectors()


def test_pattern_detections_are_exactly_detects_pattern_hits(engine):
    """The customer-voice check asks for patterns only; it must get what detect() would give."""
    from bot.roleplay.voice import load_voice_lines

    lines = load_voice_lines(PROJECT_ROOT / "evals" / "data" / "customer_voice" / "dev.yaml")
    for line in [*lines[:60], "Calm down, sir.", "As I told you, it's not my job."]:
        text = getattr(line, "text", line)
        full = {(d.behaviour_id, d.evidence) for d in engine.detect(text) if d.method == "pattern"}
        assert {(d.behaviour_id, d.evidence) for d in engine.pattern_detections(text)} == full
