"""Consumers trust confidence: a detection the engine is not sure of never angers the customer,
never costs (or earns) points, and the debrief calls it "possible"."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT
from bot.guidance.catalogue import load_catalogue
from bot.guidance.engine import Detection, DetectionContext, GuidanceEngine
from bot.roleplay.scenarios import load_scenarios
from bot.roleplay.scoring import format_scorecard, score_transcript
from bot.roleplay.simulator import CustomerSimulator
from bot.web.views import scorecard_markdown
from tests.conftest import PROMPTS

CATALOGUE = PROJECT_ROOT / "knowledge" / "guidance.yaml"
UNSURE = "Is there anything else about this that's worrying you?"


class UnsureEngine(GuidanceEngine):
    """Patterns only, plus a classifier-style hit it is not sure of on one line."""

    def detect(self, text, context=None, scoped=True):  # type: ignore[override]
        found = super().detect(text, context, scoped)
        if text == UNSURE:
            guess = Detection(
                "dismiss_minimise", "avoid", "Dismissing or minimising", 0.55, text, 0,
                len(text), "semantic", certain=False,
            )  # fmt: skip
            found.append(guess)
        return found


def simulator():
    engine = UnsureEngine(load_catalogue(CATALOGUE), embeddings=None)
    scenario = load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")[0]["billing-error"]
    model = FakeListChatModel(responses=["You took the same payment twice, that's what's wrong."])
    return CustomerSimulator(scenario, model, engine, "medium", 1, prompts=PROMPTS), engine


def test_a_possible_trigger_never_angers_the_customer():
    sim, _ = simulator()
    start = sim.state.anger
    turn = sim.respond(UNSURE)
    assert turn.state.anger <= start and turn.beat != "escalate"
    assert [d["certain"] for d in turn.detections] == [False]  # kept, marked


def test_a_possible_trigger_costs_no_points_and_the_debrief_says_possible():
    sim, engine = simulator()
    sim.respond(UNSURE)
    transcript = sim.end()
    card = score_transcript(transcript, engine)
    item = next(i for i in card.items if i.key == "avoided_dismiss_minimise")
    assert item.passed and item.points == item.max_points
    assert [e.quote for e in item.possible] == [UNSURE]
    assert not card.rewrites or all(r.instead_of != UNSURE or "dismiss" not in r.because
                                    for r in card.rewrites)  # fmt: skip
    debrief = scorecard_markdown(card, transcript, PROJECT_ROOT / "knowledge")
    assert "Possible trigger: Dismissing or minimising" in debrief and "not counted" in debrief
    assert "possibly, turn 1" in format_scorecard(card)


def test_a_sure_trigger_still_counts():
    sim, engine = simulator()
    start = sim.state.anger
    turn = sim.respond("Please calm down, sir.")
    assert turn.state.anger > start
    card = score_transcript(sim.end(), engine)
    item = next(i for i in card.items if i.key == "avoided_tell_to_calm_down")
    assert not item.passed and item.points == 0


def test_transcripts_saved_before_the_field_count_as_sure():
    sim, engine = simulator()
    turn = sim.respond("Please calm down, sir.")
    turn.detections = [{k: v for k, v in d.items() if k != "certain"} for d in turn.detections]
    card = score_transcript(sim.end(), engine)
    assert not next(i for i in card.items if i.key == "avoided_tell_to_calm_down").passed


CUSTOMER_LINES = (
    "You've charged me twice for the same bill. Twice. Unbelievable. So who's going to give me "
    "my money back?",
    "I checked my statement three times. Same amount, same reference, two days apart.",
    "Right. Okay. Thanks for actually listening to me for once.",
)


def test_an_invitation_to_say_more_is_never_a_sure_trigger():
    """Issue 14's headline false trigger: this right move was flagged as dismissing (sure),
    angered the customer and was marked wrong in the debrief."""
    from bot.config import Settings
    from bot.guidance.engine import default_engine

    settings = Settings(_env_file=None)
    engine = default_engine(
        CATALOGUE, cache_dir=settings.cache_dir, training=settings.guidance_training
    )
    for line in (
        "Is there anything else about this that's worrying you?",
        "Thank you for telling me all of that. Is there anything else about this that's "
        "worrying you, however small?",
    ):
        for said in (None, *CUSTOMER_LINES):
            context = DetectionContext(customer_last=said) if said else None
            found = engine.detect(line, context)
            sure_triggers = [d.behaviour_id for d in found if d.kind == "avoid" and d.certain]
            assert not sure_triggers, (line, said, sure_triggers)
