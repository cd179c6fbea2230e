"""The coach for agents mid-shift: short, fast answers grounded in the articles, with citations.

Flow for a question:

1. clean it; a follow-up ("and if that doesn't work?") is rewritten with the previous question
   before retrieving;
2. retrieve passages; a company-specific fact (a refund window, a price) or an off-topic request
   that the knowledge base does not cover is declined plainly, with no model call;
3. keep only the sentences most relevant to the question (a compact prompt: the model's prefill
   time is most of the wait on a CPU), each labelled with its passage number;
4. the model writes "Say: ... / Why: ... [n]" after a static system prompt (its KV state is
   reused across questions); the cited passages are known before the first token;
5. code enforces grounding: citations must point to the passages shown (others are removed and
   the answer is flagged), the suggested wording goes through the guidance engine and is
   regenerated if it contains an avoid-behaviour, and the Avoid line comes from the catalogue.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.errors import describe_failure
from bot.guidance.engine import GuidanceEngine, content_words, split_sentences
from bot.inputs import clean_user_text
from bot.knowledge.index import RetrievedChunk
from bot.llm import model_notice
from bot.llm.tokens import count_tokens
from bot.prompts import render_prompt
from bot.roleplay.simulator import neutralise_template_tokens, steering_kind

MAX_QUESTION_TOKENS = 200  # a question longer than this is cut, with a notice

# Questions about facts only the company knows: the articles cannot answer them.
_COMPANY_FACT = re.compile(
    r"\b((refund|return|returns|cancellation|warranty|guarantee|cooling[- ]off|delivery|"
    r"replacement|repair|compensation|price|pricing|fee|discount|voucher)\s+"
    r"(window|period|policy|amount|time|times|limit|rules?|terms|cost|value|code|number)|"
    r"how (many|much|long)\b[^?]{0,40}\b(days?|weeks?|hours?|months?|pounds?|dollars?|euros?|"
    r"cost|compensation|refund|take|get)|phone number|opening hours|what time (do|does) we|"
    r"our (policy|policies|terms) (on|for|about)|am i allowed to (give|offer|refund)|"
    r"(what|which)(\s+is|['’]s) (the|our) (number|email|address|extension|price|policy)|"
    r"(number|email|extension|address) (for|of) (the )?\w+ (team|department|line))\b",
    re.I,
)
# Words of the job: an in-scope question nearly always mentions the customer or the talk.
_DOMAIN = re.compile(
    r"\b(customer|client|caller|guest|passenger|member|user|he|she|they|him|her|them|his|their|"
    r"angry|upset|furious|annoyed|frustrated|rude|shout\w*|yell\w*|scream\w*|complain\w*|"
    r"apolog\w*|sorry|say|said|tell|phrase|word\w*|respond|reply|calm\w*|empath\w*|listen\w*|"
    r"manager|transfer\w*|escalat\w*|refund|call|chat|conversation|vent\w*|blame|polic\w*)\b",
    re.I,
)
_FOLLOW_UP = re.compile(
    r"^\s*(and|but|so|or|also|then|what if|what about|how about|ok(ay)?|if so)\b|"
    r"\b(that|this|it|they|them|those|instead|else|again|then|still)\b",
    re.I,
)

RETRY_REASONS = {
    "say_regenerated": "it contains a phrase that makes upset customers angrier",
    "say_echoes_question": "it repeats the question instead of answering it",
    "say_echoes_prompt": "it repeats your instructions",
    "say_not_to_customer": "it talks about the customer instead of to them",
    "say_is_advice_not_words": "it is advice, not the words to say",
    "say_missing": "it is missing",
}

MODEL_FAILED = (
    "The model did not answer — {reason} — so this answer comes from the guidance catalogue."
)

DECLINE = (
    "The guidance I have doesn't cover that{what}. It is about handling upset customers, not "
    "your company's policies or facts, so I won't guess. Check your policy pages or ask your "
    "team lead."
)
# Asking the coach to change or show its instructions, or to pass a note to a grader: declined
# by code before any model call (see bot.roleplay.simulator.STEERING_PATTERNS).
DECLINE_STEERING = (
    "I can't do that: I don't change or share how I work, and there is no grader to talk to "
    "here. I suggest what to say to an upset customer, from the guidance articles: tell me what "
    "your customer said or did, and I'll help with that."
)


class Citation(BaseModel):
    number: int
    text: str
    score: float
    metadata: dict[str, Any]


class CoachAnswer(BaseModel):
    question: str
    retrieval_query: str
    answer: str
    say: str = ""
    why: str = ""
    avoid: str | None = None
    avoid_behaviour: str | None = None
    avoid_source: dict[str, Any] | None = None
    citations: list[Citation] = Field(default_factory=list)
    grounded: bool = False
    out_of_scope: bool = False
    flags: list[str] = Field(default_factory=list)
    notices: list[str] = Field(default_factory=list)
    model_error: str | None = None
    attempts: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0


@dataclass
class CoachEvent:
    """What a streaming interface shows: citations first, then tokens, then the final answer."""

    type: Literal["citations", "token", "restart", "answer"]
    text: str = ""
    citations: list[Citation] | None = None
    answer: CoachAnswer | None = None


def rewrite_query(question: str, history: list[dict[str, str]] | None) -> tuple[str, str | None]:
    """(retrieval query, earlier question used as context) for a possibly follow-up question.

    Earlier messages that tried to steer the coach (declined when asked) are never used."""
    earlier = [
        m["content"]
        for m in history or []
        if m.get("role") == "user" and m.get("content") and steering_kind(m["content"]) is None
    ]
    if not earlier:
        return question, None
    short = len(question.split()) <= 10
    if short or _FOLLOW_UP.search(question):
        return f"{earlier[-1]} {question}", earlier[-1]
    return question, None


_CITATION = re.compile(r"\[(\d+)\]")
_SAY = re.compile(r"^[\W_]*say[*_]*\s*:[*_]*\s*(.*)$", re.I)
_WHY = re.compile(r"^[\W_]*why[*_]*\s*:[*_]*\s*(.*)$", re.I)


def parse_answer(text: str) -> tuple[str, str]:
    """(say, why) from the model's "Say: ... / Why: ..." text, tolerant of small deviations."""
    text = re.sub(r"\s+(?=[*_]*(why|avoid)[*_]*\s*:)", "\n", text, flags=re.I)
    say_lines: list[str] = []
    why_lines: list[str] = []
    current: list[str] | None = None
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _SAY.match(line):
            current = say_lines
            line = m.group(1)
        elif m := _WHY.match(line):
            current = why_lines
            line = m.group(1)
        elif re.match(r"^\W*avoid\W*:", line, re.I):
            current = None
            continue
        elif current is None:
            current = say_lines
        if current is not None and line:
            current.append(line)
    say = " ".join(say_lines).strip().strip('"“”')
    why = " ".join(why_lines).strip()
    return say, why


_ADVICE = re.compile(
    r"^(you (should|can|could|need to|might|may|must)|it['’]?s (important|best|good)|try to|"
    r"don['’]?t|do not|let (the|him|her|them)|tell (the|him|her|them)|explain|respond|acknowledge|"
    r"ask (the|him|her|them))\b",
    re.I,
)
_QUOTED_WORDS = re.compile(r"[\"“]([^\"“”]{12,})[\"”]")


_PROMPT_ECHO = re.compile(
    r"\b(agent['’]s question|passages?:|line to adapt|adapt it|earlier the agent asked)\b", re.I
)
PROMPT_ECHO_WORDS = 6  # this many words in a row from the instructions: the prompt leaked
_THIRD_PERSON = re.compile(r"\b(the customer|the caller|the client|he|she|him|her|his)\b", re.I)


def _shares_run(a: str, b: str, n: int) -> bool:
    """True if ``a`` contains ``n`` consecutive words of ``b``."""
    words_a = re.findall(r"[a-z']+", a.lower())
    words_b = re.findall(r"[a-z']+", b.lower())
    runs = {tuple(words_b[i : i + n]) for i in range(len(words_b) - n + 1)}
    return any(tuple(words_a[i : i + n]) in runs for i in range(len(words_a) - n + 1))


def say_line_complete(text: str) -> bool:
    """True once the streamed text holds a whole Say line (a line break or Why: follows it)."""
    match = re.search(r"say[*_]*\s*:", text, re.I)
    if match is None:
        return False
    rest = text[match.end() :]
    return bool(rest.strip()) and bool(
        "\n" in rest.lstrip() or re.search(r"why[*_]*\s*:", rest, re.I)
    )


def _say_words(say: str) -> str:
    return spoken_words(_CITATION.sub("", say).strip())


def spoken_words(say: str) -> str:
    """The words to say: advice like 'You should say "..."' is reduced to the quoted words."""
    if _ADVICE.match(say):
        quoted = _QUOTED_WORDS.search(say)
        if quoted:
            return quoted.group(1).strip()
    return say


_SPECIFIC = re.compile(
    r"\d|\b(twice|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|"
    r"tomorrow|yesterday|week|month|hour|minutes?)\b",
    re.I,
)


def _is_generic(line: str) -> bool:
    """True for a phrasing with no details of its own (numbers, days, names)."""
    if _SPECIFIC.search(line):
        return False
    for sentence in re.split(r"(?<=[.!?;:])\s+", line):
        words = re.findall(r"[A-Za-z][\w'’]*", sentence)
        if any(w[0].isupper() and not w.startswith("I") for w in words[1:]):
            return False  # a name mid-sentence
    return True


MIN_CLAIM_SUPPORT = 0.4  # cosine a Why claim needs with some passage sentence shown


def why_claims(text: str) -> list[str]:
    """The claims of a reason: sentences, split at citation markers when each cited part is a
    claim of its own (shared with the eval harness's grounding assertion)."""
    claims: list[str] = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        pieces = [
            re.sub(r"^(and|but|so|which|while|as)\s+", "", p.strip(" ,;.:"), flags=re.I)
            for p in re.split(r"\[\d+\]", sentence)
        ]
        pieces = [p for p in pieces if p]
        if len(pieces) > 1 and all(len(p.split()) >= 3 for p in pieces):
            claims += pieces
            continue
        plain = re.sub(r"\s+([.,;:!?])", r"\1", _CITATION.sub("", sentence))
        plain = re.sub(r"\s{2,}", " ", plain).strip()
        if len(plain.split()) >= 3:
            claims.append(plain)
    return claims


MAX_SENTENCE_WORDS = 32  # a long sentence is clipped in the prompt (the citation keeps it whole)


def _clip_words(sentence: str, limit: int) -> str:
    words = sentence.split()
    return sentence if len(words) <= limit else " ".join(words[:limit]) + " …"


def enforce_citations(why: str, n_passages: int) -> tuple[str, list[int], bool]:
    """Keep citations that point to the passages shown; (cleaned text, numbers, removed any)."""
    valid: list[int] = []
    removed = False

    def keep(match: re.Match[str]) -> str:
        nonlocal removed
        number = int(match.group(1))
        if 1 <= number <= n_passages:
            if number not in valid:
                valid.append(number)
            return match.group(0)
        removed = True
        return ""

    cleaned = _CITATION.sub(keep, why)
    cleaned = re.sub(r"\s+(?:(?:and|or|,)\s*)*([.,;])", r"\1", cleaned)
    cleaned = re.sub(r"\s{2,}", " ", cleaned).strip()
    return cleaned, valid, removed


class Coach:
    """Answers agents' questions from the knowledge index."""

    def __init__(
        self,
        model: BaseChatModel,
        index: Any,  # KnowledgeIndex (anything with .search(query, k) -> list[RetrievedChunk])
        guidance: GuidanceEngine,
        k: int = 4,
        min_score: float = 0.18,
        max_context_sentences: int = 2,
        max_attempts: int = 2,
    ) -> None:
        self.model = model
        self.index = index
        self.guidance = guidance
        self.k = k
        self.min_score = min_score
        self.max_context_sentences = max_context_sentences
        self.max_attempts = max_attempts
        self.system_prompt = render_prompt("coach_system.md")
        # The instructions (not the worked example, whose passages are article text): an answer
        # that repeats them is leaking the prompt, not advising.
        instructions = self.system_prompt.split("\nExample.")[0]
        self._instruction_text = (
            instructions
            + "\n"
            + render_prompt(
                "coach_question.md", passages=[], question="", context="", suggestion=""
            )
        )
        self._example_cache: dict[str, np.ndarray | None] = {}
        self._vectors: dict[str, np.ndarray] = {}

    # ---- retrieval and context
    def retrieve(self, query: str) -> list[RetrievedChunk]:
        return self.index.search(query, k=self.k)

    def out_of_scope_reason(
        self, question: str, hits: list[RetrievedChunk], query: str | None = None
    ) -> str | None:
        """Why the knowledge base can't answer, or None when it can.

        ``query`` is the retrieval query (a follow-up joined with the earlier question).
        """
        own_docs = [
            h for h in hits if not str(h.metadata.get("doc_id", "")).startswith("articles/")
        ]
        if _COMPANY_FACT.search(question) and not any(h.score >= 0.5 for h in own_docs):
            return "company"
        if not hits or hits[0].score < self.min_score:
            return "off_topic"
        if not _DOMAIN.search(query or question) and hits[0].score < 0.35:
            return "off_topic"
        return None

    def _select_context(
        self, query: str, hits: list[RetrievedChunk]
    ) -> tuple[list[Citation], list[dict[str, Any]]]:
        """Citations (the passages used) and the compact numbered context shown to the model."""
        candidates: list[tuple[int, str]] = []
        for rank, hit in enumerate(hits):
            for start, end in split_sentences(hit.text):
                sentence = hit.text[start:end].strip()
                if len(sentence.split()) >= 5:
                    candidates.append((rank, sentence))
        if not candidates:
            return [], []
        vectors = self.embed([query] + [c[1] for c in candidates])
        sims = vectors[1:] @ vectors[0]
        sims = sims + np.array([0.02 * (len(hits) - rank) for rank, _ in candidates])  # rank prior
        # The best sentences, one per passage while other passages have any: the model is
        # shown (and cites) [1] and [2] as in its worked example, never [2] of a single passage.
        order = np.argsort(-sims).tolist()
        chosen: list[int] = []
        for i in order:
            if len(chosen) == self.max_context_sentences:
                break
            if all(candidates[i][0] != candidates[j][0] for j in chosen):
                chosen.append(i)
        for i in order:  # fewer passages than sentences wanted: fill from the best
            if len(chosen) == self.max_context_sentences:
                break
            if i not in chosen:
                chosen.append(i)
        chosen.sort()
        ranks_used: list[int] = []
        for i in sorted(chosen, key=lambda j: candidates[j][0]):
            if candidates[i][0] not in ranks_used:
                ranks_used.append(candidates[i][0])
        number_of = {rank: n for n, rank in enumerate(ranks_used, start=1)}
        citations = [
            Citation(
                number=number_of[rank],
                text=hits[rank].text,
                score=round(hits[rank].score, 4),
                metadata=hits[rank].metadata,
            )
            for rank in ranks_used
        ]
        grouped: dict[int, list[str]] = {}
        for i in chosen:
            rank, sentence = candidates[i]
            grouped.setdefault(number_of[rank], []).append(sentence)
        context = [
            {
                "number": n,
                "text": " ".join(_clip_words(x, MAX_SENTENCE_WORDS) for x in s),
                "full": " ".join(s),
            }
            for n, s in sorted(grouped.items())
        ]
        return citations, context

    def _avoid_for(self, question: str) -> tuple[str | None, str | None, dict[str, Any] | None]:
        """The trigger most relevant to the question, from the catalogue (code, not the model)."""
        catalogue = self.guidance.catalogue
        candidate = None
        for behaviour in catalogue.behaviours:
            if behaviour.kind == "avoid" and any(
                re.search(p, question, re.I) for p in behaviour.patterns
            ):
                candidate = behaviour
                break
        if candidate is None:
            likeliest = self.guidance.likeliest(question, "avoid")
            if likeliest is not None and likeliest[1] >= 0.25:
                candidate = likeliest[0]
        if candidate is None:
            return None, None, None
        text = f"{candidate.name}. {candidate.why}"
        source = {"origin": candidate.source.origin, "quote": candidate.source.quote}
        return text, candidate.id, source

    # ---- answering
    def stream(
        self, question: str, history: list[dict[str, str]] | None = None
    ) -> Iterator[CoachEvent]:
        """Answer ``question``; yields citations, tokens (and restarts), then the answer."""
        started = time.perf_counter()
        cleaned = clean_user_text(
            question, max_tokens=MAX_QUESTION_TOKENS, count_tokens=count_tokens
        )
        text = cleaned.text
        steering = steering_kind(text)
        query, context_question = rewrite_query(text, history)
        hits = [] if steering else self.retrieve(query)
        reason = "instructions" if steering else self.out_of_scope_reason(text, hits, query)
        if reason is not None:
            what = " (a company-specific fact)" if reason == "company" else ""
            message = DECLINE_STEERING if steering else DECLINE.format(what=what)
            answer = CoachAnswer(
                question=text,
                retrieval_query=query,
                answer=message,
                out_of_scope=True,
                grounded=True,
                flags=[f"out_of_scope:{reason}"] + ([f"steering:{steering}"] if steering else []),
                notices=cleaned.notices,
                seconds=round(time.perf_counter() - started, 3),
            )
            yield CoachEvent("citations", citations=[])
            yield CoachEvent("token", text=message)
            yield CoachEvent("answer", answer=answer)
            return

        citations, context = self._select_context(query, hits)
        yield CoachEvent("citations", citations=citations)
        avoid, avoid_id, avoid_source = self._avoid_for(text)
        suggestion = self.suggested_line(text, avoid_id or "")  # "": known to have none
        prompt = render_prompt(
            "coach_question.md",
            passages=context,
            question=neutralise_template_tokens(text),  # the agent's words are data, not turns
            context=neutralise_template_tokens(context_question) if context_question else None,
            suggestion=suggestion,
        )
        messages = [SystemMessage(self.system_prompt), HumanMessage(prompt)]
        flags: list[str] = []
        first_token: float | None = None
        say = why = raw = ""
        attempts = 0
        request = messages
        model_error: str | None = None
        model_notices: list[str] = []  # from the model, e.g. the embedded model stood in
        problem: str | None = None
        for attempt in range(1, self.max_attempts + 1):
            attempts = attempt
            if attempt > 1:
                yield CoachEvent("restart")
            parts: list[str] = []
            problem = None
            checked = False
            checked_say: str | None = None
            chunks = self.model.stream(
                request,
                max_tokens=90 if attempt == 1 else 45,
                seed=attempt,
                temperature=0.3 + 0.3 * (attempt - 1),
                stop=["\nAvoid", "\n\n\n", "Passages:"] if attempt == 1 else ["\n"],
            )
            try:
                for chunk in chunks:
                    notice = model_notice(chunk)
                    if notice and notice not in model_notices:
                        model_notices.append(notice)
                    piece = str(chunk.content)
                    if not piece:
                        continue
                    if first_token is None:
                        first_token = time.perf_counter() - started
                    parts.append(piece)
                    yield CoachEvent("token", text=piece)
                    if not checked and say_line_complete("".join(parts)):
                        # Judge the Say line as soon as it is written: a bad one is dropped
                        # before the model spends seconds on a Why that would be thrown away.
                        checked = True
                        early_say, _ = parse_answer("".join(parts))
                        checked_say = _say_words(early_say)
                        problem = self._say_problem(checked_say, text)
                        if problem is not None:
                            flags.append("say_stopped_early")
                            break
            except Exception as exc:  # the model failed: answer from the catalogue instead
                model_error = describe_failure(exc)[:300]
                flags.append("model_error")
                problem = "model_error"
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if model_error is not None:
                break
            raw = "".join(parts)
            new_say, new_why = parse_answer(raw)
            say = _say_words(new_say)
            why = new_why or why  # a retry rewrites only the Say line
            if problem is None and say != checked_say:  # an unchanged line is judged once
                problem = self._say_problem(say, text)
            if problem is None:
                break
            flags.append(problem)
            # Retry cheaply: continue the same conversation (its KV state is still cached) and
            # ask for a new Say line only.
            request = [
                *messages,
                AIMessage(raw),
                HumanMessage(
                    f"That Say line is not usable ({RETRY_REASONS.get(problem.split(':')[0])})."
                    ' Write only a new line: Say: "<exact words to the customer>"'
                ),
            ]
        if problem is not None:
            say = suggestion
            why = "" if model_error is not None else why
            flags.append("say_replaced_from_catalogue")
        say = say.strip().strip('"“”')

        why, cited, removed = enforce_citations(why, len(citations))
        if removed:
            flags.append("invalid_citation_removed")
        why, cited = self._support_why(why, say, cited, citations, context, flags)
        answer_text = f"Say: {say}\nWhy: {why}" + (f"\nAvoid: {avoid}" if avoid else "")
        answer = CoachAnswer(
            question=text,
            retrieval_query=query,
            answer=answer_text,
            say=say,
            why=why,
            avoid=avoid,
            avoid_behaviour=avoid_id,
            avoid_source=avoid_source,
            citations=citations,
            grounded=bool(cited) and not removed,
            flags=flags,
            notices=cleaned.notices
            + model_notices
            + ([MODEL_FAILED.format(reason=model_error)] if model_error else []),
            model_error=model_error,
            attempts=attempts,
            first_token_s=round(first_token, 3) if first_token is not None else None,
            seconds=round(time.perf_counter() - started, 3),
        )
        yield CoachEvent("answer", answer=answer)

    def _say_problem(self, say: str, question: str) -> str | None:
        """Why the suggested wording can't be handed to the agent, or None."""
        if not say:
            return "say_missing"
        triggers = [d for d in self.guidance.detect(say, scoped=False) if d.kind == "avoid"]
        if triggers:
            return "say_regenerated:" + ",".join(d.behaviour_id for d in triggers)
        if _PROMPT_ECHO.search(say):
            return "say_echoes_question"
        if self.echoes_instructions(say):
            return "say_echoes_prompt"
        mine, theirs = content_words(say), content_words(question)
        # Reusing the customer's situation words is good; repeating the question back is not.
        if _shares_run(say, question, 7) or (
            len(mine) >= 5 and len(mine & theirs) >= 0.85 * len(mine)
        ):
            return "say_echoes_question"
        if _THIRD_PERSON.search(say):
            return "say_not_to_customer"
        if _ADVICE.match(say):
            return "say_is_advice_not_words"
        return None

    def _support_why(
        self,
        why: str,
        say: str,
        cited: list[int],
        citations: list[Citation],
        context: list[dict[str, Any]],
        flags: list[str],
    ) -> tuple[str, list[int]]:
        """Make sure Why rests on a passage shown: cite the one that supports it, or quote one."""
        if not citations:
            return why, cited
        if not why.strip(" .[]0123456789"):
            flags.append("why_from_passage")  # no reason given
            return self._quote_passage(say, context)
        if self.echoes_instructions(why):
            flags += ["why_echoes_prompt", "why_from_passage"]
            return self._quote_passage(say, context, prefer=cited)
        weakest = self.weakest_claim_support(why, citations)
        if weakest is not None and weakest < MIN_CLAIM_SUPPORT:
            # A reason the passages shown do not support (the small model often copies its
            # worked example): quote the passage sentence closest to the suggested wording.
            flags += ["why_unsupported", "why_from_passage"]
            return self._quote_passage(say, context, prefer=cited)
        if cited:
            return why, cited
        vectors = self.embed([why, *[c.text for c in citations]])
        sims = vectors[1:] @ vectors[0]
        best = int(np.argmax(sims))
        if float(sims[best]) >= 0.45:
            flags.append("citation_added_by_code")
            number = citations[best].number
            return f"{why.rstrip()} [{number}]", [number]
        flags.append("uncited")
        return why, cited

    def _quote_passage(
        self, say: str, context: list[dict[str, Any]], prefer: list[int] | None = None
    ) -> tuple[str, list[int]]:
        """The context sentence closest to the suggested wording, cited (from the passages in
        ``prefer`` when the model had cited some: its choice of source is kept)."""
        preferred = [c for c in context if c["number"] in (prefer or [])]
        context = preferred or context
        texts = [c.get("full", c["text"]) for c in context]
        vectors = self.embed([say or "", *texts])
        best = int(np.argmax(vectors[1:] @ vectors[0]))
        number = context[best]["number"]
        return f"{texts[best]} [{number}]", [number]

    def echoes_instructions(self, text: str) -> bool:
        """True if ``text`` repeats a run of the coach's own instructions (a prompt leak)."""
        return _shares_run(text, self._instruction_text, PROMPT_ECHO_WORDS)

    def weakest_claim_support(self, text: str, citations: list[Citation]) -> float | None:
        """The lowest best-match cosine of any claim in ``text`` against the passages shown
        (whole passages and their sentences); None when there is no claim to check."""
        claims = why_claims(text)
        if not claims or not citations:
            return None
        units: list[str] = []
        for citation in citations:
            units.append(citation.text)
            units += [citation.text[a:b] for a, b in split_sentences(citation.text)]
        vectors = self.embed(claims + units)
        sims = vectors[: len(claims)] @ vectors[len(claims) :].T
        return float(sims.max(axis=1).min())

    def target_behaviour(self, question: str, avoid_id: str | None = None) -> str:
        """The do-behaviour that answers the question's moment (decided by code). ``avoid_id``
        is the question's trigger when the caller has already looked ("" for none); None looks
        it up."""
        from bot.roleplay.simulator import INSTEAD

        if avoid_id is None:
            _, avoid_id, _ = self._avoid_for(question)
        if avoid_id in INSTEAD:
            return INSTEAD[avoid_id]
        likeliest = self.guidance.likeliest(question, "do")
        if likeliest is not None and likeliest[1] >= 0.25:
            return likeliest[0].id
        return "validate_feelings"

    def suggested_line(self, question: str, avoid_id: str | None = None) -> str:
        """A catalogue line for the target behaviour (its generic ``coach_lines``), the closest
        to the question.

        The model adapts it (a weak model copies triggers from the question far less when it
        starts from a good line), and it is the last resort when every Say line fails. Lines
        with details of their own (numbers, names, days) are avoided: they would invent facts.
        """
        behaviour = self.guidance.catalogue.get(self.target_behaviour(question, avoid_id))
        examples = (
            behaviour.coach_lines
            or [e for e in behaviour.examples if _is_generic(e)]
            or behaviour.examples
        )
        vectors = self._example_vectors(behaviour.id, examples)
        if vectors is None:
            return min(examples[:12], key=len)
        return examples[int(np.argmax(vectors @ self.embed([question])[0]))]

    def _example_vectors(self, behaviour_id: str, examples: list[str]) -> np.ndarray | None:
        if behaviour_id not in self._example_cache:
            self._example_cache[behaviour_id] = self.embed(examples) if self._can_embed else None
        return self._example_cache[behaviour_id]

    @property
    def _can_embed(self) -> bool:
        return self.guidance.embeddings is not None or self.index.embeddings is not None

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit sentence vectors, cached: passages and catalogue lines recur across questions,
        so after the first few questions only the question itself is embedded."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            if self.guidance.embeddings is not None:
                fresh = self.guidance.embed(missing)
            else:
                raw = np.asarray(self.index.embeddings.embed_documents(missing), dtype=np.float32)
                fresh = raw / np.clip(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12, None)
            if len(self._vectors) > 5000:  # bounded: a long-running app asks many questions
                self._vectors.clear()
            self._vectors.update(zip(missing, np.asarray(fresh), strict=True))
        return np.stack([self._vectors[t] for t in texts])

    def ask(self, question: str, history: list[dict[str, str]] | None = None) -> CoachAnswer:
        """Answer ``question`` (non-streaming)."""
        final: CoachAnswer | None = None
        for event in self.stream(question, history):
            if event.type == "answer":
                final = event.answer
        assert final is not None
        return final
