"""The customer's mood rules and beats: what the trainee's line does to the customer's state,
and what the customer does next. Decided by code, from the catalogue's ``customer_rules``;
every change names the behaviour (or rule) that caused it.

The articles behind the rules: customers calm down once they feel heard and validated
(004 steps 1-4), triggers such as "calm down", "as you were told" or pointing to a document
make them angrier (000), and the main bone of contention comes last (004 step 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.guidance.catalogue import CustomerRules
from bot.guidance.engine import Detection, content_words
from bot.roleplay.acts import ActCatalogue, OfferReading, TraineeMove, read_move
from bot.roleplay.models import MoodState, Outcome, StateChange
from bot.roleplay.scenarios import DifficultyPreset, Scenario

# "I can send ...", "we'll refund ...", "how about ...": the trainee is offering something.
_OFFER_FRAME = re.compile(
    r"\b(i|we)\s*(can|could|will|['’]ll|would like to|am going to|['’]m going to|are going to|"
    r"['’]re going to|['’]d like to)\s+(?!not\b)\w+|\bhow about\b|\bwhat if (i|we)\b|"
    r"\blet me (send|refund|arrange|book|get|credit|waive|replace|cover)\b|\boffer\b",
    re.I,
)
_NEUTRAL_MOVES = {"factual_question", "wait_request", "closing", "anything_else", "fair_question"}
_LIMITS = {"anger": (0, 10), "trust": (0, 10), "patience": (0, 99), "heard": (0, 99)}

# A beat's instruction: the key of its text in prompts/customer_beats.yaml and its variables.
Instruction = tuple[str, dict[str, str]]


@dataclass
class RulesOutcome:
    beat: str
    changes: list[StateChange] = field(default_factory=list)
    instruction: Instruction = ("", {})
    outcome: Outcome | None = None
    topic: str = ""  # what the line must be about (a gripe, the hidden issue)
    must_name: list[str] = field(default_factory=list)  # one of these words (the offer's terms)
    fill: dict[str, str] = field(default_factory=dict)  # {offer}/{missing} in fallback lines
    answer: str = ""  # the fact a factual question asked for (its fallback line)


@dataclass
class _Turn:
    """What one trainee line did, as the rules see it."""

    state: MoodState
    changes: list[StateChange] = field(default_factory=list)

    def change(self, field_name: str, delta: int, cause: str, reason: str) -> None:
        before = getattr(self.state, field_name)
        low, high = _LIMITS[field_name]
        after = max(low, min(high, before + delta))
        if after != before:
            setattr(self.state, field_name, after)
            self.changes.append(
                StateChange(field=field_name, delta=after - before, cause=cause, reason=reason)
            )

    def note(self, field_name: str, delta: int | bool, cause: str, reason: str) -> None:
        self.changes.append(StateChange(field=field_name, delta=delta, cause=cause, reason=reason))


class MoodRules:
    """Updates a customer's state from the behaviours in a trainee line and picks the beat."""

    def __init__(
        self,
        scenario: Scenario,
        preset: DifficultyPreset,
        rules: CustomerRules,
        state: MoodState,
        acts: ActCatalogue | None = None,
    ) -> None:
        self.scenario = scenario
        self.preset = preset
        self.rules = rules
        self.state = state
        self.acts = acts  # without act cues, only the behaviours and offers are read

    def apply(self, detections: list[Detection], trainee: str, off_script: bool) -> RulesOutcome:
        """Update the state from what the trainee did and choose the customer's beat."""
        self.state.turn += 1
        turn = _Turn(self.state)
        avoid = [d for d in detections if d.kind == "avoid"]
        listening = [d for d in detections if d.behaviour_id in self.rules.listening]
        if off_script:
            turn.change("patience", -1, "off_script", "the line was not said to the customer")
        self._triggers(turn, avoid)
        offer = not off_script and self.is_offer(trainee, detections)
        move = self._move(trainee, detections, offer)
        if not avoid and not off_script:
            self._listening(turn, listening, detections, move)
        if offer:
            self.state.offer_made = True
            self._offer_effect(turn, move.offer, bool(avoid))
        if not detections and not offer and not off_script and not move.acts & _NEUTRAL_MOVES:
            turn.change("patience", -1, "no_progress", "nothing in the line helps them feel heard")
        if self.state.feels_heard and self.state.anger > 8:
            self.state.feels_heard = False
            cause = avoid[0].behaviour_id if avoid else "anger"
            turn.note("feels_heard", False, cause, "angry again: no longer feels heard")
        if avoid or off_script or self.state.anger >= 10 or self.state.patience <= 0:
            return self._choose_beat(turn.changes, avoid, listening, offer, off_script)
        return self._answer_move(turn.changes, listening, move) or self._choose_beat(
            turn.changes, avoid, listening, offer, off_script
        )

    def _move(self, trainee: str, detections: list[Detection], offer: bool) -> TraineeMove:
        if self.acts is None:
            return TraineeMove()
        offered = self.state.offered_terms
        move = read_move(trainee, detections, self.scenario, self.acts, offered, offer)
        if move.offer is not None:
            new = [t.name for t in move.offer.offered if t.name not in offered]
            self.state.offered_terms = [*offered, *new]
        return move

    def _offer_effect(self, turn: _Turn, reading: OfferReading | None, avoid: bool) -> None:
        """A fair offer to a customer who feels heard calms them; one that lacks a required
        term costs patience (and never calms)."""
        if reading is None or avoid:
            return
        if not reading.fair:
            turn.change(
                "patience", -1, "offer_incomplete", f"the offer lacks {reading.missing_text}"
            )
        elif self.state.feels_heard:
            turn.change("anger", -1, "fair_offer", f"a fair offer: {reading.offer_text}")

    def _answer_move(
        self, changes: list[StateChange], listening: list[Detection], move: TraineeMove
    ) -> RulesOutcome | None:
        """The beat that answers the trainee's act, if the act calls for one."""
        s = self.state
        if move.offer is not None:
            return self._offer_beat(changes, move.offer)
        if "anything_else" in move.acts and s.feels_heard and not s.hidden_revealed:
            reason = "asked what else is wrong, once heard, they say what really matters"
            return self._reveal(changes, "anything_else", reason, "reveal")
        if "fair_question" in move.acts:
            s.solution_asked = True
            return RulesOutcome("say_wants", changes, ("say_wants", {"wants": self.scenario.wants}))
        if move.fact is not None:
            s.facts_told = [*s.facts_told, move.fact.about]
            fact = {"fact": move.fact.answer}
            return RulesOutcome(
                "answer_fact", changes, ("answer_fact", fact), topic=move.fact.answer,
                answer=move.fact.answer,
            )  # fmt: skip
        return None

    def _triggers(self, turn: _Turn, avoid: list[Detection]) -> None:
        for d in avoid:
            bump = 2 if d.behaviour_id in self.rules.strong_triggers else 1
            turn.change("anger", bump, d.behaviour_id, f"{d.name}: “{d.evidence}”")
            turn.change("trust", -1, d.behaviour_id, f"{d.name} erodes trust")
            turn.change("heard", -1, d.behaviour_id, "they feel dismissed, not heard")
            turn.change("patience", -1, d.behaviour_id, "a trigger uses up patience")

    def _listening(
        self,
        turn: _Turn,
        listening: list[Detection],
        detections: list[Detection],
        move: TraineeMove,
    ) -> None:
        s = self.state
        solving = [d for d in detections if d.behaviour_id in self.rules.solving]
        if move.offer is not None and not move.offer.fair:
            solving = []  # an incomplete offer earns nothing (see _offer_effect)
        if listening:
            first = listening[0]
            turn.change("heard", 1, first.behaviour_id, f"{first.name}: “{first.evidence}”")
        elif "anything_else" in move.acts:
            turn.change("heard", 1, "anything_else", "invited to say more, they feel listened to")
        for d in listening[:2]:
            turn.change("anger", -1, d.behaviour_id, f"{d.name} soothes")
        if s.heard >= self.preset.heard_needed and not s.feels_heard and s.anger <= 7:
            s.feels_heard = True
            cause = listening[0].behaviour_id if listening else "heard"
            turn.note("feels_heard", True, cause, "they finally feel heard")
        for d in solving[:2]:
            if s.feels_heard:
                turn.change("anger", -1, d.behaviour_id, f"{d.name} once they feel heard")
                turn.change("trust", 1, d.behaviour_id, f"{d.name} builds trust")
            else:
                turn.note("anger", 0, d.behaviour_id, "too early: they do not feel heard yet")
        if any(d.behaviour_id == self.rules.asks_solution for d in detections):
            s.solution_asked = True

    def is_offer(self, trainee: str, detections: list[Detection]) -> bool:
        """A concrete offer: the guidance engine sees one, or an offering frame plus offer words."""
        found = {d.behaviour_id for d in detections}
        if self.rules.offer in found:
            return True
        if self.rules.refusal in found:
            return False
        words = set(re.findall(r"[a-z]+", trainee.lower()))
        keywords = {k.lower() for k in self.scenario.fair_resolution.offer_keywords}
        return bool(words & keywords) and bool(_OFFER_FRAME.search(trainee))

    # ---- beats
    def _hidden_topic(self) -> str:
        """Words that belong to the hidden issue alone (before "||"), then all of its words."""
        sc = self.scenario
        surface = content_words(" ".join([sc.wants, sc.opening_line, *sc.surface_complaints]))
        hidden_text = f"{sc.hidden_issue.summary} {sc.hidden_issue.reveal_line}"
        hidden_only = content_words(hidden_text)
        return " ".join(sorted(hidden_only - surface)) + " || " + hidden_text

    def _choose_beat(
        self,
        changes: list[StateChange],
        avoid: list[Detection],
        listening: list[Detection],
        offer: bool,
        off_script: bool,
    ) -> RulesOutcome:
        s = self.state
        if s.anger >= 10 or s.patience <= 0:
            key = "leave_furious" if s.anger >= 10 else "leave_out_of_patience"
            return RulesOutcome("leave", changes, (key, {}), "customer_left")
        if off_script:
            return RulesOutcome("escalate", changes, ("escalate_off_script", {}))
        if avoid:
            return RulesOutcome("escalate", changes, ("escalate", {"evidence": avoid[0].evidence}))
        if offer:
            return self._offer_beat(changes, None)
        return self._talk_beat(changes, listening)

    def _offer_beat(self, changes: list[StateChange], reading: OfferReading | None) -> RulesOutcome:
        """Accept a fair offer once heard and the real issue is out; otherwise weigh it, naming
        its terms, or reject it, naming what is missing."""
        s = self.state
        reading = reading or OfferReading((), (), unjudged=True)
        fill = {"offer": reading.offer_text}
        if reading.missing:
            fill["missing"] = reading.missing_text
        variables = {"offer": reading.offer_text, "missing": reading.missing_text,
                     "fair": self.scenario.fair_resolution.summary}  # fmt: skip

        def beat(name: str, key: str, outcome: Outcome | None = None) -> RulesOutcome:
            return RulesOutcome(name, changes, (key, variables), outcome,
                                must_name=reading.keywords, fill=fill)  # fmt: skip

        if reading.fair and s.feels_heard and s.hidden_revealed and s.anger <= 6:
            return beat("accept", "accept", "resolved")
        if reading.fair and s.feels_heard and not s.hidden_revealed:
            outcome = self._reveal(changes, "offer",
                                   "an offer that misses the real issue brings it out",
                                   "reveal_after_offer")  # fmt: skip
            outcome.instruction = ("reveal_after_offer", {**variables, **outcome.instruction[1]})
            outcome.must_name, outcome.fill = reading.keywords, fill
            return outcome
        if reading.fair:
            return beat("consider_offer", "consider_fair_offer")
        if reading.offered:
            return beat("consider_offer", "consider_offer")
        return beat("reject_offer", "reject_offer")

    def _reveal(
        self, changes: list[StateChange], cause: str, reason: str, key: str
    ) -> RulesOutcome:
        self.state.hidden_revealed = True
        changes.append(StateChange(field="hidden_revealed", delta=True, cause=cause, reason=reason))
        hidden = {"hidden": self.scenario.hidden_issue.summary}
        return RulesOutcome("reveal", changes, (key, hidden), topic=self._hidden_topic())

    def _talk_beat(self, changes: list[StateChange], listening: list[Detection]) -> RulesOutcome:
        s, sc = self.state, self.scenario
        all_gripes_aired = s.gripes_aired >= len(sc.surface_complaints)
        if s.feels_heard and not s.hidden_revealed and all_gripes_aired:
            reason = "feeling heard, they finally say what really matters"
            return self._reveal(changes, "feels_heard", reason, "reveal")
        if not all_gripes_aired:
            # The secondary gripes come first; the real issue is saved for last (004, step 2).
            gripe = sc.surface_complaints[s.gripes_aired]
            s.gripes_aired += 1
            key = "gripe_calmer" if listening else "gripe"
            return RulesOutcome("gripe", changes, (key, {"gripe": gripe}), topic=gripe)
        if listening or s.feels_heard:
            return RulesOutcome("soften", changes, ("soften", {"wants": sc.wants}))
        repeat = {"name": sc.customer.name, "wants": sc.wants}
        return RulesOutcome(
            "gripe", changes, ("repeat", repeat), topic=f"{sc.wants} {sc.opening_line}"
        )
