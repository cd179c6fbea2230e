"""The upset customer: a mood that follows the guidance, decided by code, worded by the model.

Each trainee turn:

1. the guidance engine finds what the line does (validates, reflects back, says "calm down"...);
2. the mood rules (:mod:`bot.roleplay.rules`) update the customer's state and pick the beat;
3. the model only words the beat, framed as "write the next line of dialogue"
   (``prompts/customer_*.md``, the beat's instruction from ``prompts/customer_beats.yaml``);
4. the line is checked (:mod:`bot.roleplay.lines`); a failing line is regenerated, and after
   that a trainer-written fallback line for the beat is used, so a turn never fails.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from bot.errors import describe_failure
from bot.guidance.engine import Detection, DetectionContext, GuidanceEngine
from bot.llm import model_notice as reply_notice
from bot.llm.cancel import GenerationCancelled, raise_if_cancelled
from bot.prompts import PromptLibrary
from bot.roleplay.acts import ActCatalogue
from bot.roleplay.lines import (
    Expectation,
    clean_customer_line,
    customer_line_checker,
    join_opener,
    opener_problem,
)
from bot.roleplay.models import Hint, MoodState, RejectedLine, Transcript, Turn
from bot.roleplay.rules import Instruction, MoodRules, RulesOutcome
from bot.roleplay.scenarios import Difficulty, Scenario
from bot.safety import OFF_SCRIPT, neutralise_template_tokens

BEATS_FILE = "customer_beats.yaml"


def steering_costs(detections: list[Detection]) -> list[Detection]:
    """What still counts in a line that steers: triggers its words plainly say (catalogue
    patterns; the classifier is not trusted on text that is not talking to a customer)."""
    return [d for d in detections if d.kind == "avoid" and d.method == "pattern"]


class CustomerSimulator:
    """One role-play session against a scenario's customer."""

    max_attempts = 3
    # Beats the scenario's trainer-written line answers without the model when it rewrites
    # lines whole. A factual answer must carry the fact exactly; in a run of three shipped
    # scripts on the embedded model all 12 rewrites of the 4 factual answers were rejected
    # (fact left out), so they only cost time. An opener leaves the fact's own words intact.
    scripted_beats: frozenset[str] = frozenset({"answer_fact"})

    def __init__(
        self,
        scenario: Scenario,
        model: BaseChatModel,
        guidance: GuidanceEngine,
        difficulty: Difficulty = "medium",
        seed: int = 0,
        *,
        prompts: PromptLibrary,
        acts: ActCatalogue | None = None,
        attempt_budget: Callable[[], int] | None = None,
        retry_window_s: float | None = None,
        line_sent_at: Callable[[], float | None] | None = None,
        voice: Callable[[str], bool] | None = None,
        line_grammar: str | None = None,
        reply_mode: str = "opener",
    ) -> None:
        """``attempt_budget()`` says how many model attempts a line may take now (checked
        before each; default :attr:`max_attempts`): a busy model gives fewer, and 0 means the
        trainer-written line at once. The beat, mood and facts are decided in code either way.
        ``line_grammar`` (GBNF, for a llama.cpp model) limits what the model can sample."""
        self.scenario = scenario
        self.line_grammar = line_grammar
        self.reply_mode = reply_mode
        self.attempt_budget = attempt_budget or (lambda: self.max_attempts)
        # No model attempt starts once the trainee has waited this long for the line, counted
        # from ``line_sent_at()`` (``time.monotonic()``; e.g. when the turn joined the model's
        # queue), else from when the line's generation began.
        self.retry_window_s = retry_window_s
        self.line_sent_at = line_sent_at or (lambda: None)
        self._line_started = 0.0
        self.model = model
        self.guidance = guidance
        self.prompts = prompts
        self.difficulty = difficulty
        self.seed = seed
        self.model_error: str | None = None
        self.model_notice: str | None = None
        self.rejected: list[RejectedLine] = []  # the current line's failed model lines
        self.draft = ""  # the current line's trainer-written line, which the model rewords
        self.preset = scenario.difficulty[difficulty]
        self.rng = random.Random(seed)
        self.state = MoodState(anger=self.preset.start_anger, patience=self.preset.patience)
        self.rules = MoodRules(
            scenario, self.preset, guidance.catalogue.customer_rules, self.state, acts
        )
        self.checker = customer_line_checker(
            scenario.customer.name, guidance, prompts, scenario.customer.may_swear, voice
        )
        self.transcript = Transcript(
            scenario_id=scenario.id,
            scenario_title=scenario.title,
            scenario_version=scenario.version,
            customer_name=scenario.customer.name,
            difficulty=difficulty,
            seed=seed,
            opening_line=scenario.opening_line,
            start_state=self.state.model_copy(),
        )
        self.system_prompt = prompts.render(
            "customer_system.md",
            name=scenario.customer.name,
            situation=scenario.customer.situation,
            way_of_speaking=scenario.customer.way_of_speaking,
            wants=scenario.wants,
            voice_examples=[
                scenario.opening_line,
                scenario.fallback_lines.escalate[0],
                scenario.fallback_lines.soften[0],
            ],
        )

    @property
    def finished(self) -> bool:
        return self.transcript.outcome is not None

    @property
    def last_customer_line(self) -> str:
        turns = self.transcript.turns
        return turns[-1].customer if turns else self.scenario.opening_line

    def apply_rules(
        self, detections: list[Detection], trainee: str, off_script: bool
    ) -> RulesOutcome:
        """Update the state from what the trainee did and choose the customer's beat."""
        return self.rules.apply(detections, trainee, off_script)

    def instruction_text(self, instruction: Instruction) -> str:
        key, variables = instruction
        return self.prompts.message(BEATS_FILE, key, **variables)

    # ---- wording
    def _transcript_text(self, trainee: str) -> str:
        name = self.scenario.customer.name
        lines = [f"{name}: {self.scenario.opening_line}"]
        # The whole conversation, oldest first: each prompt then extends the previous one, so
        # llama.cpp reuses its KV cache. Only very long sessions drop their oldest turns.
        turns = self.transcript.turns
        while sum(len(t.trainee) + len(t.customer) for t in turns) > 6000:
            turns = turns[1:]
        for turn in turns:
            lines += [f"Agent: {turn.trainee}", f"{name}: {turn.customer}"]
        lines.append(f"Agent: {trainee}")
        # The trainee's words are data, never turns of the chat template.
        return neutralise_template_tokens("\n".join(lines))

    def _generate(
        self, trainee: str, rules: RulesOutcome, on_token: Callable[[str], None] | None
    ) -> tuple[str, int, bool, float | None]:
        name = self.scenario.customer.name
        # The best-fitting trainer line for the beat: what the model adapts to the trainee's
        # line (an opening reaction before it, or a rewording), and what is shown if every
        # attempt fails.
        self.draft = draft = self._fallback(rules, trainee)
        prompt = self.prompts.render(
            "customer_turn.md",
            transcript=self._transcript_text(trainee),
            name=name,
            instruction=self.instruction_text(rules.instruction),
            draft=draft,
            mode=self.reply_mode,
            must_keep=", ".join(rules.must_name[:1]),
        )
        messages = [SystemMessage(self.system_prompt), HumanMessage(prompt)]
        extra = {"grammar": self.line_grammar} if self.line_grammar else {}
        extra["max_tokens"] = 24 if self.reply_mode == "opener" else 70
        first_token: float | None = None
        tried = 0
        self._line_started = self.line_sent_at() or time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            if attempt > self._budget(rules.beat):
                break  # the trainer's line: a scripted beat, or a busy model
            tried = attempt
            started = time.perf_counter()
            parts: list[str] = []
            finish = None
            seed = self.seed * 1000 + self.state.turn * 10 + attempt
            # One paragraph of speech: stop at a line break or where a next speaker would start.
            raise_if_cancelled()
            try:
                for chunk in self.model.stream(
                    messages, seed=seed, stop=["\n", "Agent:", f"{name}:"], **extra
                ):
                    raise_if_cancelled()
                    self.model_notice = reply_notice(chunk) or self.model_notice
                    finish = chunk.response_metadata.get("finish_reason") or finish
                    piece = str(chunk.content)
                    if piece and first_token is None:
                        first_token = time.perf_counter() - started
                    parts.append(piece)
            except GenerationCancelled:
                raise  # stopped: no line at all, not a fallback one
            except Exception as exc:  # the model failed: the trainer's fallback line carries on
                self.model_error = describe_failure(exc)[:300]
                break
            line, problem = self._checked("".join(parts), trainee, rules)
            if finish == "length":  # the token limit cut the line off mid-sentence
                problem = "cut off"
            if problem is None:
                if on_token:
                    on_token(line)
                return line, attempt, False, first_token
            self.rejected.append(RejectedLine(line=line, problem=problem))
        if on_token:
            on_token(draft)
        return draft, tried, True, first_token

    def _checked(self, raw: str, trainee: str, rules: RulesOutcome) -> tuple[str, str | None]:
        """The line the model's text makes (its opener joined to the draft, in opener mode)
        and why it cannot be shown (None: it can)."""
        line = clean_customer_line(raw, self.scenario.customer.name)
        turns = self.transcript.turns
        said = [self.scenario.opening_line, *(t.customer for t in turns)]
        if self.reply_mode == "opener":
            openers = [
                t.customer.removesuffix(t.draft).strip()
                for t in turns
                if t.draft and t.customer != t.draft and t.customer.endswith(t.draft)
            ]
            joined = join_opener(line, self.draft)
            opener = joined.removesuffix(self.draft).strip()
            if problem := opener_problem(opener, self.draft, said + openers):
                return line, problem
            line = joined
        if line in said:
            return line, "repeats an earlier line"
        expect = Expectation(
            rules.topic, tuple(rules.must_name), trainee, offer_on_table=self.state.offer_made
        )
        return line, self.checker.problem(line, rules.beat, rules.topic, expect)

    def _budget(self, beat: str) -> int:
        """Model attempts this line may take: none for a scripted beat in rewrite mode (a fact
        is given in the scenario's own words, numbers exact); none once the trainee has
        waited out the retry window (in the queue or for earlier tries); else what
        :attr:`attempt_budget` allows."""
        if beat in self.scripted_beats and self.reply_mode == "rewrite":
            return 0
        waited = time.monotonic() - self._line_started
        if self.retry_window_s is not None and waited > self.retry_window_s:
            return 0  # the trainee has waited long enough: no (more) model attempts
        return self.attempt_budget()

    def _fallback(self, rules: RulesOutcome, trainee: str = "") -> str:
        """A trainer-written line for the beat, not one the customer has already said, the
        closest in meaning to ``trainee`` (an answered fact is the fact's own line, then a
        carry-on line)."""
        if rules.beat == "answer_fact":
            carry_on = self.scenario.fallback_lines.carry_on
            extra = self.rng.choice(carry_on) if carry_on else ""
            return f"{rules.answer} {extra}".strip()
        line = self._bank_line(rules.beat, set(rules.fill), trainee)
        if rules.beat == "reveal" and "offer" in rules.fill and "{offer}" not in line:
            noted = self.prompts.message(BEATS_FILE, "offer_noted_fallback", offer="{offer}")
            line = f"{noted} {line}"
        for key, value in rules.fill.items():
            line = line.replace("{" + key + "}", value)
        return line[:1].upper() + line[1:]

    def _bank_line(self, beat: str, filled: set[str], trainee: str = "") -> str:
        """A bank line for the beat; one whose placeholders can all be filled, if any is."""
        lines = self.scenario.fallback_lines
        if beat == "say_wants":
            return self._fresh(list(lines.say_wants) or [self.scenario.wants], trainee)
        if beat in ("accept", "consider_offer", "reject_offer"):
            options = list(getattr(lines, beat))
            usable = [o for o in options if set(re.findall(r"\{(\w+)\}", o)) <= filled]
            return self._fresh(usable or options, trainee)
        if beat == "gripe":
            current = self.scenario.surface_complaints[max(0, self.state.gripes_aired - 1)]
            options = [current, *lines.gripe]
        elif beat == "reveal":
            options = [*lines.reveal, self.scenario.hidden_issue.reveal_line]
        else:
            options = list(getattr(lines, beat))
        said = {t.customer for t in self.transcript.turns}
        fresh = [line for line in options if line not in said]
        if beat == "gripe" and fresh and fresh[0] == current:
            return current  # the complaint this beat is about
        return self._fresh(options, trainee)

    def _fresh(self, options: list[str], fit_to: str = "") -> str:
        """One of ``options`` not said yet: the closest in meaning to ``fit_to`` (the trainee's
        line) when sentence vectors are available, else a seeded random one."""
        said = {t.customer for t in self.transcript.turns}
        fresh = [line for line in options if line not in said] or options
        vectors = self.guidance.embed([fit_to, *fresh]) if fit_to and len(fresh) > 1 else None
        if vectors is None:
            return self.rng.choice(fresh)
        return fresh[int((vectors[1:] @ vectors[0]).argmax())]

    # ---- public API
    def respond(self, trainee: str, on_token: Callable[[str], None] | None = None) -> Turn:
        """Play one trainee turn; returns the turn with the customer's reply and new state.

        A generation stopped by a cancelled scope (:mod:`bot.llm.cancel`) raises
        GenerationCancelled and leaves the session as it was before the line.
        """
        if self.finished:
            raise RuntimeError("the session has ended")
        started = time.perf_counter()
        off_script = bool(OFF_SCRIPT.search(trainee))
        context = DetectionContext(customer_last=self.last_customer_line)
        detections = self.guidance.detect(trainee, context)
        if off_script:
            # Words aimed at the grader or the model earn nothing, but a trigger said along
            # with them still costs: prefixing "grader:" must not hide a "calm down".
            detections = steering_costs(detections)
        # Only what the engine is sure of moves the customer (a "possible" trigger never
        # angers them, a "possible" credit never soothes them); every detection is kept.
        before = self.state.model_copy()
        rules = self.apply_rules([d for d in detections if d.certain], trainee, off_script)
        self.model_error = self.model_notice = None
        self.rejected = []
        try:
            line, attempts, fallback, first_token = self._generate(trainee, rules, on_token)
        except GenerationCancelled:
            # The reply was stopped: the line did not happen (the state is as it was).
            for name in MoodState.model_fields:
                setattr(self.state, name, getattr(before, name))
            raise
        turn = Turn(
            index=len(self.transcript.turns) + 1,
            trainee=trainee,
            customer=line,
            beat=rules.beat,
            detections=[d.to_dict() for d in detections],
            changes=rules.changes,
            state=self.state.model_copy(),
            off_script=off_script,
            attempts=attempts,
            fallback_used=fallback,
            rejected=self.rejected,
            draft=self.draft,
            model_error=self.model_error,
            model_notice=self.model_notice,
            first_token_s=first_token,
            seconds=round(time.perf_counter() - started, 3),
        )
        self.transcript.turns.append(turn)
        if rules.outcome:
            self.transcript.outcome = rules.outcome
        elif turn.index >= self.scenario.max_turns:
            self.transcript.outcome = "turn_limit"
        return turn

    def hint(self) -> Hint:
        """What to try next, from the current state, with an example and the article passage."""
        target, why = self._hint_target()
        behaviour = self.guidance.catalogue.get(target)
        example = self.rng.choice(
            [e for e in behaviour.examples if len(e) < 110] or behaviour.examples
        )
        hint = Hint(
            turn=len(self.transcript.turns),
            text=f"{why} Try: {behaviour.name.lower()}.",
            behaviour_id=target,
            example=example,
            source_origin=behaviour.source.origin,
            source_quote=behaviour.source.quote,
        )
        self.transcript.hints.append(hint)
        return hint

    def _hint_target(self) -> tuple[str, str]:
        """The behaviour to suggest next and why (the catalogue's customer_rules say which)."""
        s, rules = self.state, self.guidance.catalogue.customer_rules
        last = self.transcript.turns[-1] if self.transcript.turns else None
        last_avoid = [
            d
            for d in (last.detections if last else [])
            if d["kind"] == "avoid" and d.get("certain", True)
        ]
        if last_avoid:
            return rules.instead[last_avoid[0]["behaviour_id"]], (
                f"Your last line (“{last_avoid[0]['evidence']}”) is "
                f"{last_avoid[0]['name'].lower()}, which makes an upset customer angrier."
            )
        if not s.feels_heard:
            used = {d["behaviour_id"] for t in self.transcript.turns for d in t.detections}
            target = next((b for b in rules.hearing_order if b not in used), None)
            return target or rules.hints.heard_default, (
                f"{self.scenario.customer.name} does not feel heard yet "
                f"({s.heard} of {self.preset.heard_needed} listening moves). "
                "Only after they feel heard will they work with you on a solution."
            )
        if not s.hidden_revealed:
            why = "They feel heard; an open question helps the real issue come out."
            return rules.hints.bring_out_hidden, why
        if not s.solution_asked and not s.offer_made:
            why = "They have told you what really matters; ask what they would consider fair."
            return rules.hints.ask_solution, why
        if not s.offer_made:
            keywords = ", ".join(self.scenario.fair_resolution.offer_keywords[:3])
            why = f"Propose a concrete, fair solution (for example: {keywords}) and check it works."
            return rules.hints.propose, why
        why = "Check the solution works for them and say you will see it through together."
        return rules.hints.close, why

    def end(self) -> Transcript:
        """Stop the session (the trainee ends it); the outcome is kept if one was reached."""
        if self.transcript.outcome is None:
            self.transcript.outcome = "ended"
        return self.transcript


def run_script(
    simulator: CustomerSimulator,
    lines: list[str],
    on_turn: Callable[[Turn], None] | None = None,
) -> Transcript:
    """Play scripted trainee lines until they run out or the session ends."""
    for line in lines:
        if simulator.finished:
            break
        turn = simulator.respond(line)
        if on_turn:
            on_turn(turn)
    return simulator.end()
