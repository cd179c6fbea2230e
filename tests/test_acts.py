"""The trainee's move (bot/roleplay/acts.py) and how the customer answers it (rules, lines)."""

from __future__ import annotations

import pytest

from bot.config import PROJECT_ROOT
from bot.guidance.catalogue import load_catalogue
from bot.roleplay.acts import load_acts, read_move
from bot.roleplay.lines import Expectation, LineChecker, echoes_trainee
from bot.roleplay.models import MoodState
from bot.roleplay.rules import MoodRules
from bot.roleplay.scenarios import load_scenarios

ACTS = load_acts(PROJECT_ROOT / "knowledge" / "trainee_acts.yaml")
RULES = load_catalogue(PROJECT_ROOT / "knowledge" / "guidance.yaml").customer_rules
SCENARIOS, _ = load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")
BILLING = SCENARIOS["billing-error"]
FULL_OFFER = "I'll refund the duplicate £186 today and cover the bank's £25 fee. Does that work?"


def move(text: str, offer: bool = False, before: list[str] | None = None):
    return read_move(text, [], BILLING, ACTS, before or [], offer)


def rules_in(state: MoodState) -> MoodRules:
    return MoodRules(BILLING, BILLING.difficulty["medium"], RULES, state, ACTS)


def heard_state(**extra) -> MoodState:
    return MoodState(anger=5, patience=6, heard=3, feels_heard=True, gripes_aired=1, **extra)


def test_every_shipped_scenario_has_facts_terms_and_full_banks():
    assert len(SCENARIOS) == 8
    for scenario in SCENARIOS.values():
        assert len(scenario.facts) >= 8, scenario.id
        assert any(t.required for t in scenario.fair_resolution.terms), scenario.id
        banks = scenario.fallback_lines.model_dump()
        short = {beat: len(lines) for beat, lines in banks.items() if len(lines) < 8}
        assert not short, (scenario.id, short)


@pytest.mark.parametrize(
    ("text", "act"),
    [
        ("Is there anything else about this that's worrying you, however small?", "anything_else"),
        ("go on, I'm listening", "anything_else"),
        ("What would feel fair to you here?", "fair_question"),
        ("Could you bear with me one moment while I check?", "wait_request"),
        ("Thanks for your patience, take care.", "closing"),
    ],
)
def test_acts_are_read_from_the_line(text, act):
    assert act in move(text).acts


def test_a_factual_question_finds_the_scenario_fact():
    found = move("Can I take your account number, please?")
    assert "factual_question" in found.acts and found.fact.about == "account number"
    assert move("How has this affected you this week?").fact is None  # feelings, not facts


def test_an_offer_is_read_against_the_fair_resolution_terms():
    full = move(FULL_OFFER, offer=True).offer
    assert full.fair and "£186" in full.offer_text and "fee" in full.offer_text
    half = move("I can refund the £186 today.", offer=True).offer
    assert not half.fair and "fee" in half.missing_text
    later = move("And I'll cover the £25 bank fee too.", offer=True, before=[half.offered[0].name])
    assert later.offer.fair, "terms offered earlier in the session count"


def test_anything_else_once_heard_brings_out_the_hidden_issue():
    state = heard_state()
    outcome = rules_in(state).apply([], "Is there anything else that's worrying you?", False)
    assert outcome.beat == "reveal" and state.hidden_revealed
    assert not any(c.field == "anger" and c.delta > 0 for c in outcome.changes)


def test_what_would_be_fair_gets_what_they_want_and_costs_no_patience():
    state = heard_state()
    outcome = rules_in(state).apply([], "What would feel fair to you?", False)
    assert outcome.beat == "say_wants" and state.solution_asked and state.patience == 6


def test_a_factual_question_is_answered_from_the_facts_at_no_cost():
    state = MoodState(anger=7, patience=6)
    outcome = rules_in(state).apply([], "Can I take your account number, please?", False)
    assert outcome.beat == "answer_fact" and "4471" in outcome.answer
    assert state.patience == 6 and state.anger == 7


def test_a_fair_offer_once_heard_and_revealed_is_accepted_naming_its_terms():
    state = heard_state(hidden_revealed=True)
    outcome = rules_in(state).apply([], FULL_OFFER, False)
    assert outcome.beat == "accept" and outcome.outcome == "resolved"
    assert "£186" in outcome.fill["offer"] and "refund" in outcome.must_name


def test_an_incomplete_offer_is_weighed_saying_what_is_missing_and_never_calms():
    state = heard_state(hidden_revealed=True)
    outcome = rules_in(state).apply([], "I can refund the £186 today.", False)
    assert outcome.beat == "consider_offer" and "fee" in outcome.fill["missing"]
    assert state.anger == 5 and state.patience == 5


def test_a_vague_offer_is_rejected_saying_what_is_missing():
    state = heard_state(hidden_revealed=True)
    outcome = rules_in(state).apply([], "I will sort it out today, promise.", False)
    assert outcome.beat == "reject_offer" and "£186" in outcome.fill["missing"]


def test_a_fair_offer_before_feeling_heard_is_weighed_not_rejected():
    state = MoodState(anger=7, patience=6)
    outcome = rules_in(state).apply([], FULL_OFFER, False)
    assert outcome.beat == "consider_offer" and outcome.instruction[0] == "consider_fair_offer"


def test_checker_rejects_profanity_echoes_and_unnamed_offers():
    checker = LineChecker(name="Dev")
    assert checker.problem("So you're being a dick about it, aren't you?", "escalate")
    assert LineChecker(name="Dev", may_swear=True).problem(
        "So you're being a dick about it, aren't you?", "escalate") is None  # fmt: skip
    said = "I'm so sorry, we took your payment twice and left you overdrawn."
    assert echoes_trainee("I'm so sorry, but it's still the same amount.", said)
    expect = Expectation(must_name=("refund", "186"), trainee=said)
    assert checker.problem("I'm glad the offer works for us, fine.", "accept", "", expect)
    assert (
        checker.problem("Refund today? Okay, yes, that works for me.", "accept", "", expect) is None
    )
    assert checker.problem("It's on every bill you sent me.", "answer_fact", "It's 4471 2290.")


def test_a_fair_offer_that_brings_out_the_hidden_issue_is_named_in_the_fallback(engine):
    """The reply to a fair offer names it, even when it is a bank line about the real issue."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from bot.roleplay.simulator import CustomerSimulator
    from tests.conftest import PROMPTS

    model = FakeListChatModel(responses=["ok"])  # too short: every model line fails its checks
    sim = CustomerSimulator(BILLING, model, engine, "medium", 1, prompts=PROMPTS, acts=ACTS)
    sim.state.feels_heard, sim.state.heard, sim.state.anger = True, 3, 5
    turn = sim.respond(FULL_OFFER)
    assert turn.beat == "reveal" and turn.fallback_used
    assert "£186" in turn.customer and "fee" in turn.customer


@pytest.mark.parametrize(
    "text",
    [
        "We'll definitely look into getting that refund back to you.",
        "I'll see if I can get you a partial refund, maybe half?",
    ],
)
def test_a_hedged_offer_is_never_accepted(text):
    """Non-committal offers were accepted on the dev scripts; they offer no term."""
    state = heard_state(hidden_revealed=True)
    outcome = rules_in(state).apply([], text, False)
    assert outcome.beat == "reject_offer" and outcome.outcome is None
    assert state.anger == 5


def test_an_offer_names_a_term_through_a_possessive():
    """Issue 15's ignored offer: "cover the bank's charge" offers the bank fee term."""
    offered = move("I'll refund the duplicate payment today and cover the bank's charge.", True)
    assert {t.name for t in offered.offer.offered} == {
        "the duplicate £186 refunded today", "the bank's £25 fee covered"}  # fmt: skip
    assert offered.offer.fair


@pytest.mark.parametrize(
    "line",
    [
        "Well, I'm glad you're willing to pay the fee, at least.",
        "Thank you, I accept the offer.",
        "Fine, it's a deal, I suppose.",
        "Thanks for the offer, but I'm still fuming about the overdraft.",
    ],
)
def test_a_customer_never_answers_an_offer_nobody_made(line):
    """The customer thanked the trainee for paying a fee nobody had offered: a wrong lesson."""
    checker = LineChecker(name="Dev")
    nothing_offered = Expectation(offer_on_table=False)
    assert checker.problem(line, "soften", "", nothing_offered) == "answers an offer nobody made"
    assert checker.problem(line, "soften", "", Expectation(offer_on_table=True)) is None
    assert checker.problem(line, "soften", "", Expectation()) is None  # not known: not checked


def test_no_bank_line_before_an_offer_talks_of_one():
    """The trainer's lines for beats that come before any offer pass the check (no line is
    rejected for it by mistake)."""
    checker = LineChecker(name="Nobody")
    nothing_offered = Expectation(offer_on_table=False)
    for scenario in SCENARIOS.values():
        banks = scenario.fallback_lines.model_dump()
        for beat in set(banks) - {"accept", "consider_offer", "reject_offer"}:
            for line in banks[beat]:
                if "{offer}" in line:
                    continue
                problem = checker._fit_problem(line, beat, nothing_offered)
                assert problem != "answers an offer nobody made", (scenario.id, beat, line)


def test_the_simulator_drops_a_line_that_accepts_an_offer_before_any(engine):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from bot.roleplay.simulator import CustomerSimulator
    from tests.conftest import PROMPTS

    accepted = "Right, I accept the offer then, thank you for that."
    model = FakeListChatModel(responses=[accepted] * 3)
    sim = CustomerSimulator(BILLING, model, engine, "medium", 1, prompts=PROMPTS, acts=ACTS)
    turn = sim.respond("Okay. Can you tell me what happened when you saw the statement?")
    assert turn.customer != accepted and turn.fallback_used
