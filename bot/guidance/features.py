"""Lexical cues of a trainee line, as numbers for the guidance classifier.

Each cue is a surface signal the articles' advice turns on (a question, "you", a negation, an
imperative, an apology, quoted words, an invitation to say more, an offer with terms, blame,
a transfer...). They are features, not rules: the classifier weighs them with the sentence
embedding, so no single cue decides a behaviour.
"""

from __future__ import annotations

import re

import numpy as np

_CUES: dict[str, str] = {
    "question": r"\?",
    "wh_start": r"^\W*(?:\w+[,—–-]?\s+){0,3}?(what|how|why|when|which|where|who)\b",
    "yesno_start": r"^\W*(is|are|was|were|do|does|did|can|could|would|will|shall|have|has)\b",
    "you": r"\b(you|your|you['’]re|u|ur|yourself)\b",
    "negation": r"\b(not|never|no|n['’]?t|nothing|nobody|cant|wont|dont|isnt)\b",
    "calm_imperative": r"^\W*(?:\w+,?\s+){0,2}?(calm|relax|settle|chill|breathe|take a (deep )?"
    r"breath|keep your|don['’]?t (get|be)|stop|look,|listen,|please don['’]?t|pls dont|whoa)",
    "imperative_start": r"^\W*(check|call|ring|go|read|see|look|visit|email|contact|try|send|"
    r"tell|walk|carry|keep|take|let|hold|bear|give)\b",
    "apology": r"\b(sorry|sry|soz|apologi[sz]e|apologies|regret|my bad|my mistake)\b",
    "stock_apology": r"\b(any|the) (inconvenience|hassle|trouble|disruption|issues?)\b|"
    r"sorry (you feel|if you)",
    "quoted": r"[\"“][^\"“”]{2,}[\"”]|(?<![\w])['‘][^'‘’]{2,}['’](?![\w])",
    "say_more": r"\b(anything|something|what) else\b|\bany other\b|\bthe rest of it\b|"
    r"\band (then|after that)\b",
    "go_on": r"\b(go on|carry on|keep going|go ahead|continue|i['’]?m listening|im listening)\b",
    "ownership": r"\b(i['’]ll|i will|ill|i['’]m going to|i am going to|i['’]ve|i have) \w+",
    "offer_terms": r"\bi (can|could|['’]ll|will)\b[^.?!]{0,60}\b(today|now|tomorrow|by \w+|"
    r"refund|credit|replace|replacement|send|book|arrange|waive)",
    "checks_ok": r"\b(would that|does that|how does that|shall i|is that (ok|okay|alright)|"
    r"are you happy|would you (accept|like|prefer)|be acceptable|sound fair)\b",
    "together": r"\b(let['’]?s|together|we['’]ll|we will|you and me|you and i)\b",
    "money": r"[£$€]\s?\d|\d+(\.\d+)?\s?(pounds?|quid|dollars?|euros?)|\btenner\b|\bfiver\b",
    "policy": r"\b(policy|policies|terms|conditions|t&cs?|faq|website|site|contract|clause|"
    r"small print|rules?)\b",
    "told_before": r"\bas (i|we) (said|told|mentioned|explained)|\b(already|twice|again) "
    r"(told|said|explained)|\bi['’]?ve (already )?(said|told|explained)",
    "minimising": r"\b(only|just) (a|an|one|the|ten|five|\d)|\bno big deal\b|\bnot (such )?a "
    r"big\b|\bover ?react|\bhappens\b|\bend of the world\b",
    "blames_you": r"\byou (should|shoulda|should['’]ve|didn['’]?t|did|were|forgot|failed|"
    r"signed|agreed|ticked|chose)\b|\bwhat did you expect\b",
    "not_mine": r"\b(not my|isn['’]?t my|above my|my pay grade|i just work|i only|not (coming )?"
    r"under my|nothing to do with me)\b",
    "refusal": r"\b(can['’]?t|cannot|cant|won['’]?t|unable to|not able to|nothing (i|we) can|"
    r"no way)\b|^\W*no\b",
    "elsewhere": r"\b(call|ring|contact|email|phone|visit|try)\b[^.?!]{0,30}\b(number|team|"
    r"department|branch|store|website|site|line|manager)\b",
    "so_start": r"^\W*(so|okay,? so|right,? so|it sounds like|sounds like)\b",
    "feelings": r"\b(upset|frustrat\w*|angry|annoy\w*|disappoint\w*|stress\w*|worr\w+|fuming|"
    r"furious|exhaust\w*|awful|rotten|rough)\b",
    "checks_understanding": r"\b(have i got|did i understand|is that right|have i understood|"
    r"got that right|understood)\b",
    "checks_back": r"\b(check (back|in)|ring you|call you|get back to you|let you know|"
    r"make sure it|email you|drop you)\b",
}
_COMPILED = [re.compile(pattern, re.I) for pattern in _CUES.values()]
_SHOUTING = re.compile(r"\b[A-Z]{2,}\b")  # emphasis in capitals: often sarcasm
CUE_NAMES = [*_CUES, "shouting", "length"]


def cues(text: str) -> np.ndarray:
    """One value per cue of ``CUE_NAMES`` (1.0 present, 0.0 absent; length scaled)."""
    values = [1.0 if pattern.search(text) else 0.0 for pattern in _COMPILED]
    values.append(1.0 if _SHOUTING.search(text.replace("I ", "")) else 0.0)
    values.append(min(len(text.split()), 60) / 30.0)
    return np.asarray(values, dtype=np.float32)
