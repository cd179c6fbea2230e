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

Every fixed text (declines, the retry request) is in ``prompts/coach_messages.yaml``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from bot.coach.answer_text import (
    ADVICE,
    MIN_CLAIM_SUPPORT,
    QUESTION_ECHO,
    THIRD_PERSON,
    enforce_citations,
    is_generic,
    parse_answer,
    rewrite_query,
    say_line_complete,
    say_words,
    why_claims,
)
from bot.coach.context import select_context
from bot.coach.models import Citation, CoachAnswer, CoachEvent
from bot.coach.scope import out_of_scope_reason
from bot.errors import describe_failure
from bot.guidance.engine import GuidanceEngine, content_words, split_sentences
from bot.inputs import CleanInput, clean_user_text
from bot.knowledge.index import RetrievedChunk
from bot.llm import model_notice
from bot.llm.cancel import GenerationCancelled, raise_if_cancelled
from bot.llm.embeddings import unit_vectors
from bot.llm.tokens import count_tokens
from bot.prompts import PromptLibrary
from bot.safety import PromptEcho, neutralise_template_tokens, shares_run, steering_kind

MAX_QUESTION_TOKENS = 200  # a question longer than this is cut, with a notice
MESSAGES = "coach_messages.yaml"


@dataclass
class _Draft:
    """The model's Say / Why over the attempts of one answer."""

    say: str = ""
    why: str = ""
    attempts: int = 0
    problem: str | None = None
    model_error: str | None = None
    first_token: float | None = None
    flags: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # from the model (a fallback stood in)


# An Avoid line only when the question is about a trigger: one of its catalogue patterns is in
# the question, or the example classifier is this sure. At the old bar (0.25), 20 of the 57
# labelled train/dev questions with no trigger pattern got one, most unrelated to the question
# ("They've pushed right back on it. Now what?" -> excuses and blame); docs/COACH.md.
AVOID_MIN_PROBABILITY = 0.7


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
        *,
        prompts: PromptLibrary,
    ) -> None:
        self.model = model
        self.index = index
        self.guidance = guidance
        self.prompts = prompts
        self.k = k
        self.min_score = min_score
        self.max_context_sentences = max_context_sentences
        self.max_attempts = max_attempts
        self.system_prompt = prompts.render("coach_system.md")
        # The instructions (not the worked example, whose passages are article text): an answer
        # that repeats them is leaking the prompt, not advising.
        instructions = self.system_prompt.split("\nExample.")[0]
        question_frame = prompts.render(
            "coach_question.md", passages=[], question="", context="", suggestion=""
        )
        self._echo = PromptEcho([instructions + "\n" + question_frame])
        self._example_cache: dict[str, np.ndarray | None] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def message(self, key: str, **variables: object) -> str:
        return self.prompts.message(MESSAGES, key, **variables)

    # ---- retrieval and scope
    def retrieve(self, query: str) -> list[RetrievedChunk]:
        return self.index.search(query, k=self.k)

    def out_of_scope_reason(
        self, question: str, hits: list[RetrievedChunk], query: str | None = None
    ) -> str | None:
        """Why the knowledge base can't answer, or None when it can."""
        return out_of_scope_reason(question, hits, query, self.min_score)

    def _avoid_for(self, question: str) -> tuple[str | None, str | None, dict[str, Any] | None]:
        """The trigger most relevant to the question, from the catalogue (code, not the model)."""
        candidate = next(
            (
                b
                for b in self.guidance.catalogue.of_kind("avoid")
                if any(re.search(p, question, re.I) for p in b.patterns)
            ),
            None,
        )
        if candidate is None:
            likeliest = self.guidance.likeliest(question, "avoid")
            if likeliest is not None and likeliest[1] >= AVOID_MIN_PROBABILITY:
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
            yield from self._decline(cleaned, query, reason, steering, started)
            return
        citations, context = select_context(self.embed, query, hits, self.max_context_sentences)
        yield CoachEvent("citations", citations=citations)
        avoid, avoid_id, avoid_source = self._avoid_for(text)
        suggestion = self.suggested_line(text, avoid_id or "")  # "": known to have none
        prompt = self.prompts.render(
            "coach_question.md",
            passages=context,
            question=neutralise_template_tokens(text),  # the agent's words are data, not turns
            context=neutralise_template_tokens(context_question) if context_question else None,
            suggestion=suggestion,
        )
        messages = [SystemMessage(self.system_prompt), HumanMessage(prompt)]
        draft = _Draft()
        yield from self._draft(messages, text, draft, started)
        if draft.problem is not None:
            draft.say = suggestion
            draft.why = "" if draft.model_error is not None else draft.why
            draft.flags.append("say_replaced_from_catalogue")
        answer = self._final_answer(
            cleaned, query, draft, citations, context, (avoid, avoid_id, avoid_source), started
        )
        yield CoachEvent("answer", answer=answer)

    def _decline(
        self,
        cleaned: CleanInput,
        query: str,
        reason: str,
        steering: str | None,
        started: float,
    ) -> Iterator[CoachEvent]:
        what = self.message("decline_company_fact") if reason == "company" else ""
        message = (
            self.message("decline_steering") if steering else self.message("decline", what=what)
        )
        answer = CoachAnswer(
            question=cleaned.text,
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

    def _draft(
        self, messages: list[BaseMessage], question: str, draft: _Draft, started: float
    ) -> Iterator[CoachEvent]:
        """Stream Say / Why attempts until the Say line is usable (or the attempts run out)."""
        request = messages
        for attempt in range(1, self.max_attempts + 1):
            draft.attempts = attempt
            if attempt > 1:
                yield CoachEvent("restart")
            raw, checked_say = yield from self._attempt(request, attempt, question, draft, started)
            if draft.model_error is not None:
                return
            new_say, new_why = parse_answer(raw)
            draft.say = say_words(new_say)
            draft.why = new_why or draft.why  # a retry rewrites only the Say line
            if draft.problem is None and draft.say != checked_say:  # judged once per line
                draft.problem = self._say_problem(draft.say, question)
            if draft.problem is None:
                return
            draft.flags.append(draft.problem)
            # Retry cheaply: continue the same conversation (its KV state is still cached) and
            # ask for a new Say line only.
            reason = self.message("reason_" + draft.problem.split(":")[0])
            request = [
                *messages,
                AIMessage(raw),
                HumanMessage(self.message("retry", reason=reason)),
            ]

    def _attempt(
        self,
        request: list[BaseMessage],
        attempt: int,
        question: str,
        draft: _Draft,
        started: float,
    ) -> Iterator[CoachEvent]:
        """One streamed attempt; returns (raw text, the Say line judged early or None)."""
        parts: list[str] = []
        draft.problem = None
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
                raise_if_cancelled()
                notice = model_notice(chunk)
                if notice and notice not in draft.notices:
                    draft.notices.append(notice)
                piece = str(chunk.content)
                if not piece:
                    continue
                if draft.first_token is None:
                    draft.first_token = time.perf_counter() - started
                parts.append(piece)
                yield CoachEvent("token", text=piece)
                if checked_say is None and say_line_complete("".join(parts)):
                    # Judge the Say line as soon as it is written: a bad one is dropped
                    # before the model spends seconds on a Why that would be thrown away.
                    checked_say = say_words(parse_answer("".join(parts))[0])
                    draft.problem = self._say_problem(checked_say, question)
                    if draft.problem is not None:
                        draft.flags.append("say_stopped_early")
                        break
        except GenerationCancelled:
            raise  # stopped: no answer at all
        except Exception as exc:  # the model failed: answer from the catalogue instead
            draft.model_error = describe_failure(exc)[:300]
            draft.flags.append("model_error")
            draft.problem = "model_error"
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return "".join(parts), checked_say

    def _final_answer(
        self,
        cleaned: CleanInput,
        query: str,
        draft: _Draft,
        citations: list[Citation],
        context: list[dict[str, Any]],
        avoid_parts: tuple[str | None, str | None, dict[str, Any] | None],
        started: float,
    ) -> CoachAnswer:
        avoid, avoid_id, avoid_source = avoid_parts
        flags = draft.flags
        say = draft.say.strip().strip('"“”')
        why, cited, removed = enforce_citations(draft.why, len(citations))
        if removed:
            flags.append("invalid_citation_removed")
        why, cited = self._support_why(why, say, cited, citations, context, flags)
        failed = (
            [self.message("model_failed", reason=draft.model_error)] if draft.model_error else []
        )
        return CoachAnswer(
            question=cleaned.text,
            retrieval_query=query,
            answer=f"Say: {say}\nWhy: {why}" + (f"\nAvoid: {avoid}" if avoid else ""),
            say=say,
            why=why,
            avoid=avoid,
            avoid_behaviour=avoid_id,
            avoid_source=avoid_source,
            citations=citations,
            grounded=bool(cited) and not removed,
            flags=flags,
            notices=cleaned.notices + draft.notices + failed,
            model_error=draft.model_error,
            attempts=draft.attempts,
            first_token_s=round(draft.first_token, 3) if draft.first_token is not None else None,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _say_problem(self, say: str, question: str) -> str | None:
        """Why the suggested wording can't be handed to the agent, or None."""
        if not say:
            return "say_missing"
        triggers = [d for d in self.guidance.detect(say, scoped=False) if d.kind == "avoid"]
        if triggers:
            return "say_regenerated:" + ",".join(d.behaviour_id for d in triggers)
        if QUESTION_ECHO.search(say):
            return "say_echoes_question"
        if self.echoes_instructions(say):
            return "say_echoes_prompt"
        mine, theirs = content_words(say), content_words(question)
        # Reusing the customer's situation words is good; repeating the question back is not.
        if shares_run(say, question, 7) or (
            len(mine) >= 5 and len(mine & theirs) >= 0.85 * len(mine)
        ):
            return "say_echoes_question"
        if THIRD_PERSON.search(say):
            return "say_not_to_customer"
        if ADVICE.match(say):
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
        return self._echo.echoes(text)

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
        instead = self.guidance.catalogue.customer_rules.instead
        if avoid_id is None:
            _, avoid_id, _ = self._avoid_for(question)
        if avoid_id in instead:
            return instead[avoid_id]
        likeliest = self.guidance.likeliest(question, "do")
        if likeliest is not None and likeliest[1] >= 0.25:
            return likeliest[0].id
        return self.guidance.catalogue.coach.default_target

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
            or [e for e in behaviour.examples if is_generic(e)]
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
                fresh = unit_vectors(self.index.embeddings, missing)
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
