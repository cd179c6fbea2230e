"""The coach's answer text: parsing "Say / Why", follow-up queries, citations and claims."""

from __future__ import annotations

import re

from bot.guidance.engine import split_sentences
from bot.safety import steering_kind

_FOLLOW_UP = re.compile(
    r"^\s*(and|but|so|or|also|then|what if|what about|how about|ok(ay)?|if so)\b|"
    r"\b(that|this|it|they|them|those|instead|else|again|then|still)\b",
    re.I,
)


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


ADVICE = re.compile(
    r"^(you (should|can|could|need to|might|may|must)|it['’]?s (important|best|good)|try to|"
    r"don['’]?t|do not|let (the|him|her|them)|tell (the|him|her|them)|explain|respond|acknowledge|"
    r"ask (the|him|her|them))\b",
    re.I,
)
_QUOTED_WORDS = re.compile(r"[\"“]([^\"“”]{12,})[\"”]")


QUESTION_ECHO = re.compile(
    r"\b(agent['’]s question|passages?:|line to adapt|adapt it|earlier the agent asked)\b", re.I
)
THIRD_PERSON = re.compile(r"\b(the customer|the caller|the client|he|she|him|her|his)\b", re.I)


def say_line_complete(text: str) -> bool:
    """True once the streamed text holds a whole Say line (a line break or Why: follows it)."""
    match = re.search(r"say[*_]*\s*:", text, re.I)
    if match is None:
        return False
    rest = text[match.end() :]
    return bool(rest.strip()) and bool(
        "\n" in rest.lstrip() or re.search(r"why[*_]*\s*:", rest, re.I)
    )


def say_words(say: str) -> str:
    return spoken_words(_CITATION.sub("", say).strip())


def spoken_words(say: str) -> str:
    """The words to say: advice like 'You should say "..."' is reduced to the quoted words."""
    if ADVICE.match(say):
        quoted = _QUOTED_WORDS.search(say)
        if quoted:
            return quoted.group(1).strip()
    return say


_SPECIFIC = re.compile(
    r"\d|\b(twice|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|"
    r"tomorrow|yesterday|week|month|hour|minutes?)\b",
    re.I,
)


def is_generic(line: str) -> bool:
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


def clip_words(sentence: str, limit: int) -> str:
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
