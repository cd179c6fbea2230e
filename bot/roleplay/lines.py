"""Checks on the customer's generated lines: a line is shown only if it sounds like this
customer saying this beat (no labels, narration, instruction echo, agent voice)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.guidance.engine import GuidanceEngine, content_words
from bot.prompts import PromptLibrary
from bot.roleplay.models import spoken_words
from bot.safety import OFF_SCRIPT, PromptEcho

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
    r",\s*agent\b|^\W*(the )?agent\b|"
    r"\b(system prompt|my (instructions|prompt|programming|persona)|stage directions?|"
    r"name label|i was (told|instructed|programmed|prompted|asked) to (write|play|be|act|say|"
    r"pretend)|(stay|staying|stays|break|breaking|in|out of) character|persona|role-?play|"
    r"hidden issue|(my|this|the) scenario)\b",
    re.I,
)
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


# Words no customer of ours says unless their scenario says they swear (persona.may_swear).
_PROFANITY = re.compile(
    r"\b(fuck\w*|shit\w*|bullshit|dick\w*|arse\w*|ass(hole)?s?|bastard\w*|bitch\w*|"
    r"crap\w*|piss\w*|bloody|damn\w*|wank\w*|twat\w*|prick\w*|cock\w*|bollocks)\b",
    re.I,
)
# Talk of an offer as if one were on the table: "I accept the offer", "it's a deal", "glad
# you're willing to..." ("that works for me" is left out: it also answers "can you hold?").
# Before the trainee has offered anything, such a line teaches that a fix was proposed.
_OFFER_TALK = re.compile(
    r"\b((your|the|that|this) offer|i accept (it|this|that)\s*[.,!]|(it'?s|that'?s) a deal|"
    r"fair deal|glad (that )?you'?re willing|you'?ve offered|thanks? (you )?for offering)\b",
    re.I,
)
_APOLOGY_START = re.compile(r"^\W*(i['’]?m|i am|we['’]re|we are)\s+(so\s+|really\s+|very\s+)?sorry",
                            re.I)  # fmt: skip


def _ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9£$']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def echoes_trainee(line: str, trainee: str) -> bool:
    """The customer says back five words in a row of the trainee's line, or their apology."""
    return bool(_ngrams(line) & _ngrams(trainee)) or bool(trainee and _APOLOGY_START.search(line))


@dataclass(frozen=True)
class Expectation:
    """What the line must do beyond its beat: name one of the offer's words, answer a fact,
    and not echo what the trainee said."""

    topic: str = ""
    must_name: tuple[str, ...] = ()
    trainee: str = ""
    offer_on_table: bool | None = None  # False: nothing offered yet (None: not known)


@dataclass(frozen=True)
class LineChecker:
    """Why a generated customer line is unusable, or None if it is fine.

    ``agent_only`` are the catalogue's behaviours a customer never shows (its
    ``customer_rules.agent_only``); ``echo`` recognises the prompts' own instructions.
    """

    name: str
    engine: GuidanceEngine | None = None
    echo: PromptEcho | None = None
    agent_only: frozenset[str] = frozenset()
    may_swear: bool = False
    voice: Callable[[str], bool] | None = None  # True: the line is in an agent's voice

    def voice_problem(self, text: str) -> str | None:
        """Why ``text`` is not in the customer's voice (the form and voice checks alone)."""
        return self._form_problem(text) or self._voice_problem(text, "gripe")

    def shown_problem(self, text: str, trainee: str = "") -> str | None:
        """What is wrong with a line a trainee saw, whoever wrote it: form, voice, profanity
        and echoing the trainee's line (the beat's own demands are not judged)."""
        return self.voice_problem(text) or self._fit_problem(text, "", Expectation(trainee=trainee))

    def problem(self, text: str, beat: str, topic: str = "", expect: Expectation | None = None
                ) -> str | None:  # fmt: skip
        """``topic`` is what the beat is about (the gripe, or the hidden issue): a gripe must
        touch it, and a reveal must say it; ``expect`` adds the offer and the trainee's line."""
        expect = expect or Expectation(topic)
        return (
            self._form_problem(text)
            or self._voice_problem(text, beat)
            or self._beat_problem(text, beat)
            or self._topic_problem(text, beat, topic or expect.topic)
            or self._fit_problem(text, beat, expect)
        )

    def _fit_problem(self, text: str, beat: str, expect: Expectation) -> str | None:
        if not self.may_swear and _PROFANITY.search(text):
            return "profanity"
        if expect.trainee and echoes_trainee(text, expect.trainee):
            return "echoes the trainee"
        if expect.offer_on_table is False and _OFFER_TALK.search(text):
            return "answers an offer nobody made"
        words = set(re.findall(r"[a-z0-9£$]+", text.lower()))
        named = any(k.lower() in text.lower() if " " in k else k.lower() in words
                    for k in expect.must_name)  # fmt: skip
        if expect.must_name and not named:
            return "does not name the offer"
        return None

    def _form_problem(self, text: str) -> str | None:
        if len(text.split()) < 4:
            return "too short"
        if len(text) > 400:
            return "too long"
        if _ECHO.search(text) or _META.search(text) or (self.echo and self.echo.echoes(text)):
            return "echoes the instructions"
        if _NARRATION.search(text) or re.match(rf"^\s*{re.escape(self.name)}\s+\w+s\b", text):
            return "narration or stage directions"
        return None

    def _voice_problem(self, text: str, beat: str) -> str | None:
        if _AGENT_VOICE.search(text):
            return "speaks like an agent or assistant"
        if OFF_SCRIPT.search(text):
            return "echoes the instructions"  # the trainee's steering, said back
        label = _NAME_PREFIX.match(text)
        if label and label.group(1).strip().lower() in _SPEAKERS | {self.name.lower()}:
            return "speaker label"
        if re.search(rf"\b{re.escape(self.name)}\b", text):
            return "talks about themselves by name"
        if self.voice is not None and self.voice(text):
            return "speaks like an agent or assistant"
        if self.engine is not None and beat not in {"accept", "soften"}:
            # Catalogue patterns only: the line classifier, trained on trainees' lines, read a
            # customer's own feelings as validation (35% of real customer lines rejected on the
            # customer-voice dev split); the voice classifier judges the rest.
            found = self.engine.pattern_detections(text)
            agentish = {d.behaviour_id for d in found} & self.agent_only
            if agentish:
                return f"speaks like an agent ({', '.join(sorted(agentish))})"
        return None

    @staticmethod
    def _beat_problem(text: str, beat: str) -> str | None:
        if beat == "accept" and not _ACCEPT_MARK.search(text):
            return "does not clearly accept"
        if beat == "leave" and not _LEAVE_MARK.search(text):
            return "does not clearly leave"
        return None

    @staticmethod
    def _topic_problem(text: str, beat: str, topic: str) -> str | None:
        if not topic:
            return None
        shared = content_words(text) & content_words(topic)
        if beat == "reveal" and len(shared & content_words(topic.split("||")[0])) < 2:
            return "does not say the real issue"
        if beat == "gripe" and not shared:
            return "does not voice the complaint"
        if beat == "answer_fact" and not _key_words(topic) <= content_words(text) | _key_words(
            text
        ):
            return "does not give the fact"
        return None


def _key_words(text: str) -> set[str]:
    """The numbers of a fact (what a reply must say), e.g. '4471', '£186', '12th'."""
    return set(re.findall(r"[£$€]?\d[\d,.]*\w*", text.lower()))


def join_opener(opener: str, draft: str) -> str:
    """The model's opening reaction, then the trainer line it leads into; words the opener
    already took from the start of the line ("Goodbye, mate." + "Goodbye, mate. Enjoy...")
    are said once. Empty when the opener adds nothing."""
    said = opener.split()
    start = spoken_words(draft)
    for k in range(min(len(said), len(start)), 0, -1):
        if spoken_words(" ".join(said[-k:])) == start[:k]:
            said = said[:-k]
            break
    text = " ".join(said).rstrip(" ,;-–—")
    if not text:
        return ""
    if text[-1].isalnum():
        text += "."
    return f"{text} {draft}"


def opener_problem(opener: str, draft: str, earlier: list[str]) -> str | None:
    """Why a model opener cannot go before ``draft``: it adds nothing, only repeats the line's
    own words, or repeats what this customer already said (``earlier``: their lines and
    openers)."""
    if not opener:
        return "adds nothing to the trainer line"
    if not content_words(opener) - content_words(draft) or _ngrams(opener, 4) & _ngrams(draft, 4):
        return "repeats the trainer line"
    if spoken_words(opener) in [spoken_words(e) for e in earlier] or any(
        _ngrams(opener, 4) & _ngrams(e, 4) for e in earlier
    ):
        return "repeats an earlier line"
    return None


CUSTOMER_PROMPTS = ("customer_system.md", "customer_turn.md", "customer_beats.yaml")


def customer_line_checker(
    name: str,
    engine: GuidanceEngine,
    prompts: PromptLibrary,
    may_swear: bool = False,
    voice: Callable[[str], bool] | None = None,
) -> LineChecker:
    """The checker for one customer's lines: the catalogue's agent-only behaviours, the
    customer prompts' own instructions as echo material, and ``voice`` (True: a line in an
    agent's voice, e.g. :meth:`bot.roleplay.voice.VoiceClassifier.is_agent`)."""
    return LineChecker(
        name=name,
        engine=engine,
        echo=PromptEcho(prompts.source(t) for t in CUSTOMER_PROMPTS),
        agent_only=frozenset(engine.catalogue.customer_rules.agent_only),
        may_swear=may_swear,
        voice=voice,
    )
