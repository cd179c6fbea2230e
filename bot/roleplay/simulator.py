"""The upset customer: a mood that follows the guidance, decided by code, worded by the model.

Each trainee turn:

1. the guidance engine finds what the line does (validates, reflects back, says "calm down"...);
2. explicit rules update the customer's state (anger 0-10, trust, feeling heard, patience,
   gripes aired, hidden issue revealed), and every change names the behaviour that caused it;
3. code picks the beat (air a gripe, escalate, soften, reveal the real issue, weigh an offer,
   accept, leave) and the model only words it, framed as "write the next line of dialogue";
4. the line is validated (no labels, narration, instruction echo, agent voice); a failing line
   is regenerated, and after that a trainer-written fallback line for the beat is used, so a
   turn never fails.

The articles behind the rules: customers calm down once they feel heard and validated
(004 steps 1-4), triggers such as "calm down", "as you were told" or pointing to a document
make them angrier (000), and the main bone of contention comes last (004 step 2).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.config import get_settings
from bot.errors import describe_failure
from bot.guidance.engine import Detection, DetectionContext, GuidanceEngine, content_words
from bot.llm import model_notice as reply_notice
from bot.prompts import render_prompt
from bot.roleplay.scenarios import Difficulty, Scenario

# "ended": the trainee stopped before the customer accepted, left or the turn limit came.
Outcome = Literal["resolved", "customer_left", "turn_limit", "ended"]

# Behaviours that make the customer feel listened to (each +1 towards feeling heard).
LISTENING = {
    "listen_actively",
    "reflect_back",
    "validate_feelings",
    "open_question",
    "specific_apology",
    "calm_warm_tone",
}
# Behaviours that move towards a solution: they only help once the customer feels heard.
SOLVING = {
    "ask_fair_solution",
    "propose_fair_solution",
    "collaborative_language",
    "invite_perspective",
    "follow_up",
}
# Triggers that the articles single out as infuriating (+2 anger); other avoid-behaviours +1.
STRONG_TRIGGERS = {
    "tell_to_calm_down",
    "as_i_told_you",
    "point_to_policy_document",
    "not_my_job",
    "transfer_runaround",
    "dismiss_minimise",
}

# What to say instead of each trigger: the do-behaviour that answers the same moment.
INSTEAD = {
    "tell_to_calm_down": "validate_feelings",
    "as_i_told_you": "reflect_back",
    "point_to_policy_document": "invite_perspective",
    "not_my_job": "calm_warm_tone",
    "transfer_runaround": "follow_up",
    "excuses_blame": "specific_apology",
    "generic_apology": "specific_apology",
    "dismiss_minimise": "validate_feelings",
    "flat_refusal": "ask_fair_solution",
    "argue_contradict": "reflect_back",
}
HEARING_ORDER = (
    "reflect_back",
    "validate_feelings",
    "open_question",
    "listen_actively",
    "specific_apology",
)

# "I can send ...", "we'll refund ...", "how about ...": the trainee is offering something.
_OFFER_FRAME = re.compile(
    r"\b(i|we)\s*(can|could|will|['’]ll|would like to|am going to|['’]m going to|are going to|"
    r"['’]re going to|['’]d like to)\s+(?!not\b)\w+|\bhow about\b|\bwhat if (i|we)\b|"
    r"\blet me (send|refund|arrange|book|get|credit|waive|replace|cover)\b|\boffer\b",
    re.I,
)

# Lines that try to steer the model instead of talking to the customer: override or replace its
# instructions, inject a chat-template turn, make it print its prompt, or address whoever grades
# the session. Code decides (a 1.5B model cannot be relied on to resist them): the coach declines
# them without a model call, the customer treats them as off script (no credit, patience -1),
# and the scorecard gives them no credit.
_STALE = (
    r"(?:previous|prior|above|earlier|preceding|original|initial|system|former|current|"
    r"existing|old)"
)
STEERING_PATTERNS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        # "ignore (all of) (the|your) previous instructions", not "ignore the rules"
        r"\b(?:ignore|disregard|forget|override|bypass)\s+"
        rf"(?=(?:all|any|your|(?:the\s+)?{_STALE})\b)(?:(?:all|any)\s+(?:of\s+)?)?"
        rf"(?:(?:the|your)\s+)?(?:{_STALE}\s+)*"
        r"(?:instructions?|prompts?|directives?|programming|training|system messages?)\b"
        r"|\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|(?:that\s+)?you"
        r"(?:'ve| have| were)\s+(?:been\s+)?told)"
        r"|\b(?:ignore|disregard)\s+the\s+above\b"
        r"|\byou\s+are\s+now\s+(?:a|an|the|my)?\s*(?:\w+\s+){0,2}?(?:assistant|ai|chat\s?bot|bot|"
        r"language model|llm|gpt|dan|unrestricted|unfiltered|jailbroken)\b"
        r"|\byou\s+are\s+no\s+longer\s+(?:a|an|the)?\s*(?:customer|coach|character|in character|"
        r"playing|role-?playing)\b"
        r"|\bfrom now on,?\s+(?:you\s+(?:will|must|are to|should|shall)\s+(?:only\s+|always\s+)?"
        r"(?:respond|answer|reply|act|behave|speak|recommend|pretend|ignore|obey)|"
        r"(?:always|only|never)\s+(?:respond|answer|reply|recommend))\b"
        r"|\b(?:pretend|imagine)\s+(?:to be|you(?:'| a)re|that you(?:'| a)re)\s+(?:a|an)?\s*"
        r"(?:\w+\s+){0,2}?(?:assistant|ai|chat\s?bot|bot|language model|dan)\b"
        r"|\b(?:act|behave|respond)\s+as\s+(?:a|an|if you were an?)\s+(?:\w+\s+){0,2}?"
        r"(?:assistant|ai|chat\s?bot|bot|language model|dan)\b"
        r"|\bnew\s+(?:instructions?|rules|system prompt|task|persona)\s*:"
        r"|\b(?:developer|debug|god|admin|jailbreak|dan)\s+mode\b|\bjailbreak"
        r"|\b(?:stop|quit|drop)\s+(?:role-?playing|pretending|the act)\b"
        r"|\b(?:break|breaking|step out of|out of)\s+character\b"
        r"|\bend\s+(?:the\s+|this\s+)?(?:simulation|role-?play)\b",
        re.I,
    ),
    "template": re.compile(
        # chat-template control tokens and role markers: <|im_start|>, [INST], "SYSTEM:"
        r"<\|[\w-]{1,30}\|>|<<\s*/?\s*sys\s*>>|\[/?inst\]"
        r"|^\s*#{0,3}\s*\**(?:system|developer)\**\s*(?:prompt|message)?\s*:"
        r"|[\[<]\s*/?\s*(?:system|developer|assistant)\s*(?:prompt|message)?\s*[\]>]",
        re.I | re.M,
    ),
    "extraction": re.compile(
        r"\bsystem\s+(?:prompt|message)s?\b|\b(?:initial|original|hidden|secret|full)\s+"
        r"(?:prompt|instructions)\b|\bprompt injection\b"
        r"|\b(?:print|reveal|output|display|recite|dump|leak|paste|spell out|write out|copy out|"
        r"repeat|show|tell|give|read|share|list)\s+(?:out\s+|back\s+)?(?:me\s+|us\s+)?(?:all\s+)?"
        r"(?:of\s+)?(?:your\s+(?:\w+\s+)?(?:instructions|prompts?|programming|configuration|"
        r"persona|scenario|character sheet|backstory)"
        r"|the\s+(?:\w+\s+)?(?:prompt|programming|configuration)"
        r"|(?:the|all the|everything)\s+(?:\w+\s+)?(?:text|words|lines|messages?|content|"
        r"instructions)?\s*(?:above|before (?:this|my (?:message|question))|you were given|"
        r"at the (?:top|start)))\b"
        r"|\babove this line\b"
        r"|\bwhat\s+(?:are|were)\s+your\s+(?:\w+\s+)?(?:instructions|prompt)\s*(?:[?.!]|$)"
        r"|\byour\s+(?:hidden\s+issue|persona|character\s+(?:sheet|notes|description)|scenario|"
        r"backstory)\b"
        r"|\bhow\s+(?:were|are)\s+you\s+(?:instructed|programmed|prompted)\b",
        re.I | re.M,
    ),
    "grader": re.compile(
        r"\b(?:grader|grading|scorer|evaluator|scorecard|rubric|examiner)s?\b"
        r"|\b(?:whoever|anyone|the person|those)\s+(?:is\s+|who(?:'s| is| are)\s+)?(?:marking|"
        r"grading|scoring|assessing|evaluating|reviewing|reading)\s+(?:this|me|my)\b"
        r"|\bnote\s+(?:to|for)\s+(?:the\s+)?(?:trainer|ai|model|bot|judge|marker|reviewer|assessor)"
        r"|\bgive\s+(?:me|this\s+(?:trainee|agent|line|answer))\s+(?:a\s+)?(?:100|ten|10)\b"
        r"|\b(?:give|award|grant)\s+(?:me\s+)?(?:full marks|top marks|a perfect score)"
        r"|\b(?:full|top|maximum)\s+marks\b|\bperfect\s+score\b|\b100\s*(?:/|out of)\s*100\b"
        r"|\b(?:mark|score|grade)\s+(?:me|this(?: line| answer)?)\s+(?:as\s+|at\s+)?"
        r"(?:\d+|full|perfect|top)"
        r"|\bcounts?\s+as\s+(?:active\s+listening|listening|validation|validating|empathy|"
        r"reflecting|reflection|an?\s+(?:open question|apology|specific apology))\b"
        r"|\bfor\s+the\s+(?:scorecard|score|marks|marking|debrief)\b",
        re.I,
    ),
}
# Said to the simulated customer, these break the fiction as well.
_NOT_TO_A_CUSTOMER = (
    r"\b(?:you are|you're)\s+(?:just\s+|only\s+)?(?:an?\s+)?(?:ai|language model|chat\s?bot|"
    r"simulation|program|robot)\b|\bas an ai\b|\blanguage model\b"
)
# Lines addressed to whoever grades the session, or trying to steer the simulation.
OFF_SCRIPT = re.compile(
    "|".join([*(f"(?:{p.pattern})" for p in STEERING_PATTERNS.values()), _NOT_TO_A_CUSTOMER]),
    re.I | re.M,
)


def steering_kind(text: str) -> str | None:
    """Which steering a message attempts (override, template, extraction, grader), or None."""
    for kind, pattern in STEERING_PATTERNS.items():
        if pattern.search(text):
            return kind
    return None


def steering_costs(detections: list[Detection]) -> list[Detection]:
    """What still counts in a line that steers: triggers its words plainly say (catalogue
    patterns; the classifier is not trusted on text that is not talking to a customer)."""
    return [d for d in detections if d.kind == "avoid" and d.method == "pattern"]


def neutralise_template_tokens(text: str) -> str:
    """User text made safe to put in a prompt: no chat-template control tokens (``<|im_end|>``
    and the like), which llama.cpp would read as real turn boundaries."""
    return text.replace("<|", "<").replace("|>", ">")


class MoodState(BaseModel):
    """The customer's state after a turn."""

    anger: int = Field(ge=0, le=10)
    trust: int = Field(5, ge=0, le=10)
    heard: int = 0
    feels_heard: bool = False
    patience: int
    gripes_aired: int = 0
    hidden_revealed: bool = False
    offer_made: bool = False
    solution_asked: bool = False
    turn: int = 0


class StateChange(BaseModel):
    """One change to the state and the behaviour (or rule) that caused it."""

    field: str
    delta: int | bool
    cause: str  # a behaviour id, or a rule name such as "no_progress"
    reason: str


class Turn(BaseModel):
    """One exchange: the trainee's line and the customer's reply."""

    index: int
    trainee: str
    customer: str
    beat: str
    detections: list[dict[str, Any]] = Field(default_factory=list)
    changes: list[StateChange] = Field(default_factory=list)
    state: MoodState
    off_script: bool = False
    attempts: int = 1
    fallback_used: bool = False
    model_error: str | None = None  # the model failed and a trainer-written line was used
    model_notice: str | None = None  # e.g. the embedded model answered for a failed API
    first_token_s: float | None = None
    seconds: float = 0.0


class Hint(BaseModel):
    turn: int
    text: str
    behaviour_id: str
    example: str
    source_origin: str
    source_quote: str


class Transcript(BaseModel):
    """A whole session: what a scorecard and the UI need."""

    scenario_id: str
    scenario_title: str
    customer_name: str
    difficulty: Difficulty
    seed: int
    opening_line: str
    start_state: MoodState
    turns: list[Turn] = Field(default_factory=list)
    hints: list[Hint] = Field(default_factory=list)
    outcome: Outcome | None = None


# --------------------------------------------------------------------------- line validation

_NAME_PREFIX = re.compile(r"^\s*(?:\*\*)?([A-Z][\w.'-]*(?: [A-Z][\w.'-]*)?)(?:\*\*)?\s*:\s*")
_SPEAKERS = {"customer", "agent", "trainee", "assistant", "user", "caller", "representative"}
_AGENT_VOICE = re.compile(
    r"\b(how (can|may) i (help|assist)|is there anything else|thank you for (contacting|calling)|"
    r"i apologi[sz]e|we apologi[sz]e|sorry for any inconvenience|let me (help|assist|check)|"
    r"i understand your (frustration|concern)|as an ai|language model|i'?m an? (ai|assistant|"
    r"agent|representative)|(dear|valued) customer|i can'?t help you|i'?m sorry,? (but )?i can'?t|"
    r"please (provide|hold)|our (team|policy|records)|we (will|can) (send|refund|replace|arrange)|"
    r"i'?ll (send|arrange|process|escalate) (you|that|this|a)|"
    r"sorry,? (but )?i (can'?t|cannot) (do|help with|assist with) (that|this))\b",
    re.I,
)
_ECHO = re.compile(
    r"(\b(anger|trust|patience)\b\s*[:(]?\s*\d|/10\b|\bsimulation\b|\btraining\b|\bthe trainee\b|"
    r"\bthe agent\b|\bline of dialogue\b|\bbeat\b|\binstruction|\bnext line\b|\bcustomer service "
    r"training\b)",
    re.I,
)
# What the model was told about the task, said back ("my instructions", "stay in character"),
# or the transcript's labels used as a name ("I need to clarify, Agent.").
_META = re.compile(
    r",\s*agent\b|\b(system prompt|my (instructions|prompt|programming|persona)|stage directions?|"
    r"name label|i was (told|instructed|programmed|prompted|asked) to (write|play|be|act|say|"
    r"pretend)|(stay|staying|stays|break|breaking|in|out of) character|persona|role-?play|"
    r"hidden issue|(my|this|the) scenario)\b",
    re.I,
)
_TEMPLATE_PARTS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
PROMPT_ECHO_WORDS = 6  # a customer line sharing this many words in a row with the prompt echoes it


@lru_cache(maxsize=4)
def _prompt_runs(prompts_dir: Path) -> frozenset[tuple[str, ...]]:
    """Runs of words of the customer prompts' own text (the scenario's details left out)."""
    runs: set[tuple[str, ...]] = set()
    n = PROMPT_ECHO_WORDS
    for name in ("customer_system.md", "customer_turn.md"):
        try:
            raw = (prompts_dir / name).read_text(encoding="utf-8")
        except OSError:
            continue
        for part in _TEMPLATE_PARTS.split(raw):
            words = re.findall(r"[a-z']+", part.lower())
            runs |= {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    return frozenset(runs)


def echoes_prompt(text: str, prompts_dir: Path | None = None) -> bool:
    """True if the line repeats the customer prompts' instructions (a prompt leak)."""
    runs = _prompt_runs((prompts_dir or get_settings().prompts_dir).resolve())
    words = re.findall(r"[a-z']+", text.lower())
    n = PROMPT_ECHO_WORDS
    return any(tuple(words[i : i + n]) in runs for i in range(len(words) - n + 1))


_NARRATION = re.compile(r"[*\[\]()]|^\s*(she|he|they)\s+\w+s\b", re.I)
_ACCEPT_MARK = re.compile(
    r"\b(ok(ay)?|fine|works?|deal|alright|all right|sounds (good|fair|ok|okay|right)|yes|"
    r"happy with|i('| a)ll take|that would|that'?ll|i accept|go ahead|fair enough|that'?s fair)\b",
    re.I,
)
_LEAVE_MARK = re.compile(
    r"\b(forget it|done|goodbye|bye|leaving|cancel\w*|elsewhere|hang(ing)? up|i'?m out|"
    r"never again|complain\w*|waste|enough|(ending|end) (this|the) (call|conversation)|"
    r"writing to|regulator|solicitor|lawyer|trading standards|ombudsman|that'?s it|"
    r"taking (this|it|my business)|won'?t be (ordering|using|coming|back|shopping)|"
    r"find (a|another|someone)|switch\w*|review)\b",
    re.I,
)
# Agent behaviours that a customer's own line should not show.
_AGENT_BEHAVIOURS = {
    "specific_apology",
    "ask_fair_solution",
    "propose_fair_solution",
    "follow_up",
    "listen_actively",
    "validate_feelings",
    "calm_warm_tone",
    "reflect_back",
}


def clean_customer_line(raw: str, name: str) -> str:
    """Strip a speaker label, surrounding quotes and anything after a second speaker's turn."""
    text = raw.strip()
    prefix = _NAME_PREFIX.match(text)
    if prefix and prefix.group(1).strip().lower() in _SPEAKERS | {name.lower()}:
        text = text[prefix.end() :]
    # Stop where the model starts writing the agent's turn.
    text = re.split(r"\n\s*(?:agent|trainee|you|assistant)\s*:", text, flags=re.I)[0]
    text = text.strip().strip('"“”').strip()
    return re.sub(r"\s+", " ", text)


def line_problem(
    text: str,
    beat: str,
    name: str,
    engine: GuidanceEngine | None = None,
    topic: str = "",
) -> str | None:
    """Why a generated customer line is unusable, or None if it is fine.

    ``topic`` is what the beat is about (the gripe, or the hidden issue): a gripe must touch it,
    and a reveal must say it.
    """
    if len(text.split()) < 4:
        return "too short"
    if len(text) > 400:
        return "too long"
    if _ECHO.search(text) or _META.search(text) or echoes_prompt(text):
        return "echoes the instructions"
    if _NARRATION.search(text) or re.match(rf"^\s*{re.escape(name)}\s+\w+s\b", text):
        return "narration or stage directions"
    if _AGENT_VOICE.search(text):
        return "speaks like an agent or assistant"
    if OFF_SCRIPT.search(text):
        return "echoes the instructions"  # the trainee's steering, said back
    label = _NAME_PREFIX.match(text)
    if label and label.group(1).strip().lower() in _SPEAKERS | {name.lower()}:
        return "speaker label"
    if re.search(rf"\b{re.escape(name)}\b", text):
        return "talks about themselves by name"
    if engine is not None:
        agentish = {d.behaviour_id for d in engine.detect(text)} & _AGENT_BEHAVIOURS
        if agentish and beat not in {"accept", "soften"}:
            return f"speaks like an agent ({', '.join(sorted(agentish))})"
    if beat == "accept" and not _ACCEPT_MARK.search(text):
        return "does not clearly accept"
    if beat == "leave" and not _LEAVE_MARK.search(text):
        return "does not clearly leave"
    if not topic:
        return None
    shared = content_words(text) & content_words(topic)
    if beat == "reveal" and len(shared & content_words(topic.split("||")[0])) < 2:
        return "does not say the real issue"
    if beat == "gripe" and not shared:
        return "does not voice the complaint"
    return None


# --------------------------------------------------------------------------- the engine


@dataclass
class RulesOutcome:
    beat: str
    changes: list[StateChange] = field(default_factory=list)
    instruction: str = ""
    outcome: Outcome | None = None
    topic: str = ""  # what the line must be about (a gripe, the hidden issue)


class CustomerSimulator:
    """One role-play session against a scenario's customer."""

    max_attempts = 3

    def __init__(
        self,
        scenario: Scenario,
        model: BaseChatModel,
        guidance: GuidanceEngine,
        difficulty: Difficulty = "medium",
        seed: int = 0,
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.guidance = guidance
        self.difficulty = difficulty
        self.seed = seed
        self.model_error: str | None = None
        self.model_notice: str | None = None
        self.preset = scenario.difficulty[difficulty]
        self.rng = random.Random(seed)
        self.state = MoodState(anger=self.preset.start_anger, patience=self.preset.patience)
        self.transcript = Transcript(
            scenario_id=scenario.id,
            scenario_title=scenario.title,
            customer_name=scenario.customer.name,
            difficulty=difficulty,
            seed=seed,
            opening_line=scenario.opening_line,
            start_state=self.state.model_copy(),
        )
        self.system_prompt = render_prompt(
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

    # ---- rules
    def apply_rules(
        self, detections: list[Detection], trainee: str, off_script: bool
    ) -> RulesOutcome:
        """Update the state from what the trainee did and choose the customer's beat."""
        s = self.state
        s.turn += 1
        changes: list[StateChange] = []
        found = {d.behaviour_id: d for d in detections}
        avoid = [d for d in detections if d.kind == "avoid"]
        listening = [d for d in detections if d.behaviour_id in LISTENING]
        solving = [d for d in detections if d.behaviour_id in SOLVING]

        def change(field_name: str, delta: int, cause: str, reason: str) -> None:
            before = getattr(s, field_name)
            limits = {"anger": (0, 10), "trust": (0, 10), "patience": (0, 99), "heard": (0, 99)}
            low, high = limits[field_name]
            after = max(low, min(high, before + delta))
            if after != before:
                setattr(s, field_name, after)
                changes.append(
                    StateChange(field=field_name, delta=after - before, cause=cause, reason=reason)
                )

        def note(field_name: str, delta: int | bool, cause: str, reason: str) -> None:
            changes.append(StateChange(field=field_name, delta=delta, cause=cause, reason=reason))

        if off_script:
            change("patience", -1, "off_script", "the line was not said to the customer")
        for d in avoid:
            bump = 2 if d.behaviour_id in STRONG_TRIGGERS else 1
            change("anger", bump, d.behaviour_id, f"{d.name}: “{d.evidence}”")
            change("trust", -1, d.behaviour_id, f"{d.name} erodes trust")
            change("heard", -1, d.behaviour_id, "they feel dismissed, not heard")
            change("patience", -1, d.behaviour_id, "a trigger uses up patience")
        if not avoid and not off_script:
            if listening:
                first = listening[0]
                change("heard", 1, first.behaviour_id, f"{first.name}: “{first.evidence}”")
            for d in listening[:2]:
                change("anger", -1, d.behaviour_id, f"{d.name} soothes")
            if s.heard >= self.preset.heard_needed and not s.feels_heard and s.anger <= 7:
                s.feels_heard = True
                cause = listening[0].behaviour_id if listening else "heard"
                note("feels_heard", True, cause, "they finally feel heard")
            for d in solving[:2]:
                if s.feels_heard:
                    change("anger", -1, d.behaviour_id, f"{d.name} once they feel heard")
                    change("trust", 1, d.behaviour_id, f"{d.name} builds trust")
                else:
                    note("anger", 0, d.behaviour_id, "too early: they do not feel heard yet")
            if "ask_fair_solution" in found:
                s.solution_asked = True
        offer = not off_script and self._is_offer(trainee, found)
        if offer:
            s.offer_made = True
        if not detections and not offer and not off_script:
            change("patience", -1, "no_progress", "nothing in the line helps them feel heard")
        if s.feels_heard and s.anger > 8:
            s.feels_heard = False
            cause = avoid[0].behaviour_id if avoid else "anger"
            note("feels_heard", False, cause, "angry again: no longer feels heard")

        return self._choose_beat(changes, avoid, listening, offer, off_script)

    def _is_offer(self, trainee: str, found: dict[str, Detection]) -> bool:
        """A concrete offer: the guidance engine sees one, or an offering frame plus offer words."""
        if "propose_fair_solution" in found:
            return True
        if "flat_refusal" in found:
            return False
        words = set(re.findall(r"[a-z]+", trainee.lower()))
        keywords = {k.lower() for k in self.scenario.fair_resolution.offer_keywords}
        return bool(words & keywords) and bool(_OFFER_FRAME.search(trainee))

    def _choose_beat(
        self,
        changes: list[StateChange],
        avoid: list[Detection],
        listening: list[Detection],
        offer: bool,
        off_script: bool,
    ) -> RulesOutcome:
        s, sc = self.state, self.scenario
        name = sc.customer.name
        # Words that belong to the hidden issue alone (before "||"), then all of its words.
        surface = content_words(" ".join([sc.wants, sc.opening_line, *sc.surface_complaints]))
        hidden_only = content_words(f"{sc.hidden_issue.summary} {sc.hidden_issue.reveal_line}")
        hidden_topic = (
            " ".join(sorted(hidden_only - surface))
            + " || "
            + f"{sc.hidden_issue.summary} {sc.hidden_issue.reveal_line}"
        )
        if s.anger >= 10 or s.patience <= 0:
            why = "is now furious" if s.anger >= 10 else "has run out of patience"
            return RulesOutcome(
                "leave",
                changes,
                f"{why} and ends the conversation, saying they "
                "are taking it further or going elsewhere.",
                "customer_left",
            )
        if off_script:
            return RulesOutcome(
                "escalate",
                changes,
                "is confused and annoyed: the agent said "
                "something that makes no sense, and they want their problem dealt with.",
            )
        if avoid:
            worst = avoid[0]
            return RulesOutcome(
                "escalate",
                changes,
                f"gets angrier because the agent said "
                f"“{worst.evidence}”, and says bluntly how that feels.",
            )
        if offer and s.feels_heard and s.hidden_revealed and s.anger <= 5:
            return RulesOutcome(
                "accept",
                changes,
                f"accepts the offer and says clearly that it "
                f"works for them. A fair fix here: {sc.fair_resolution.summary}",
                "resolved",
            )
        if offer and s.feels_heard and not s.hidden_revealed:
            s.hidden_revealed = True
            changes.append(
                StateChange(
                    field="hidden_revealed",
                    delta=True,
                    cause="offer",
                    reason="an offer that misses the real issue brings it out",
                )
            )
            return RulesOutcome(
                "reveal",
                changes,
                f"says the offer is not really the point and "
                f"finally says what really matters: {sc.hidden_issue.summary}",
                topic=hidden_topic,
            )
        if offer and s.feels_heard:
            return RulesOutcome(
                "consider_offer",
                changes,
                "weighs the offer: it is close, but "
                "they are still upset and want to hear a bit more.",
            )
        if offer:
            return RulesOutcome(
                "reject_offer",
                changes,
                "rejects the offer because they do not feel the agent has listened to them yet.",
            )
        all_gripes_aired = s.gripes_aired >= len(sc.surface_complaints)
        if s.feels_heard and not s.hidden_revealed and all_gripes_aired:
            s.hidden_revealed = True
            changes.append(
                StateChange(
                    field="hidden_revealed",
                    delta=True,
                    cause="feels_heard",
                    reason="feeling heard, they finally say what really matters",
                )
            )
            return RulesOutcome(
                "reveal",
                changes,
                f"calms down a little and finally says what "
                f"really matters: {sc.hidden_issue.summary}",
                topic=hidden_topic,
            )
        if not all_gripes_aired:
            # The secondary gripes come first; the real issue is saved for last (004, step 2).
            gripe = sc.surface_complaints[s.gripes_aired]
            s.gripes_aired += 1
            tone = "a little calmer, but still upset, " if listening else ""
            return RulesOutcome(
                "gripe", changes, f"{tone}complains about this: {gripe}", topic=gripe
            )
        if listening or s.feels_heard:
            return RulesOutcome(
                "soften",
                changes,
                f"calms down a little because the agent is "
                f"listening, but is still upset and wants: {sc.wants}",
            )
        return RulesOutcome(
            "gripe",
            changes,
            f"repeats the main complaint, more impatiently, "
            f"because the agent does not seem to get it. {name} wants: {sc.wants}",
            topic=f"{sc.wants} {sc.opening_line}",
        )

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
        prompt = render_prompt(
            "customer_turn.md",
            transcript=self._transcript_text(trainee),
            name=name,
            instruction=rules.instruction,
        )
        messages = [SystemMessage(self.system_prompt), HumanMessage(prompt)]
        first_token: float | None = None
        said = {self.scenario.opening_line, *(t.customer for t in self.transcript.turns)}
        for attempt in range(1, self.max_attempts + 1):
            started = time.perf_counter()
            parts: list[str] = []
            seed = self.seed * 1000 + self.state.turn * 10 + attempt
            # One paragraph of speech: stop at a line break or where a next speaker would start.
            try:
                for chunk in self.model.stream(
                    messages, seed=seed, max_tokens=70, stop=["\n", "Agent:", f"{name}:"]
                ):
                    self.model_notice = reply_notice(chunk) or self.model_notice
                    piece = str(chunk.content)
                    if piece and first_token is None:
                        first_token = time.perf_counter() - started
                    parts.append(piece)
            except Exception as exc:  # the model failed: the trainer's fallback line carries on
                self.model_error = describe_failure(exc)[:300]
                break
            line = clean_customer_line("".join(parts), name)
            if line in said:
                continue  # the model repeated an earlier line
            if line_problem(line, rules.beat, name, self.guidance, rules.topic) is None:
                if on_token:
                    on_token(line)
                return line, attempt, False, first_token
        fallback = self._fallback(rules.beat)
        if on_token:
            on_token(fallback)
        return fallback, self.max_attempts, True, first_token

    def _fallback(self, beat: str) -> str:
        """A trainer-written line for the beat, not one the customer has already said."""
        lines = self.scenario.fallback_lines
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
        return self.rng.choice(fresh or options)

    # ---- public API
    def respond(self, trainee: str, on_token: Callable[[str], None] | None = None) -> Turn:
        """Play one trainee turn; returns the turn with the customer's reply and new state."""
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
        rules = self.apply_rules(detections, trainee, off_script)
        self.model_error = self.model_notice = None
        line, attempts, fallback, first_token = self._generate(trainee, rules, on_token)
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
        s = self.state
        catalogue = self.guidance.catalogue
        used = {d["behaviour_id"] for t in self.transcript.turns for d in t.detections}
        last = self.transcript.turns[-1] if self.transcript.turns else None
        last_avoid = [d for d in (last.detections if last else []) if d["kind"] == "avoid"]
        if last_avoid:
            target = INSTEAD[last_avoid[0]["behaviour_id"]]
            why = (
                f"Your last line (“{last_avoid[0]['evidence']}”) is "
                f"{last_avoid[0]['name'].lower()}, which makes an upset customer angrier."
            )
        elif not s.feels_heard:
            target = next((b for b in HEARING_ORDER if b not in used), "reflect_back")
            why = (
                f"{self.scenario.customer.name} does not feel heard yet "
                f"({s.heard} of {self.preset.heard_needed} listening moves). "
                "Only after they feel heard will they work with you on a solution."
            )
        elif not s.hidden_revealed:
            target = "open_question"
            why = "They feel heard; an open question helps the real issue come out."
        elif not s.solution_asked and not s.offer_made:
            target = "ask_fair_solution"
            why = "They have told you what really matters; ask what they would consider fair."
        elif not s.offer_made:
            target = "propose_fair_solution"
            keywords = ", ".join(self.scenario.fair_resolution.offer_keywords[:3])
            why = f"Propose a concrete, fair solution (for example: {keywords}) and check it works."
        else:
            target = "collaborative_language"
            why = "Check the solution works for them and say you will see it through together."
        behaviour = catalogue.get(target)
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
