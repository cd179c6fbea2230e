"""The guidance engine: which pieces of the articles' advice a line follows or breaks.

The catalogue (`knowledge/guidance.yaml`) lists behaviours distilled from the articles, each
with example phrasings, lexical patterns and the passage it comes from. ``detect`` combines:

1. **Patterns**: precise regexes for the usual surface forms (high confidence).
2. **Semantic similarity** of each sentence to the behaviour's example phrasings (MiniLM), so
   paraphrases are caught; a sentence must also be clearly closer to the behaviour than to the
   catalogue's neutral service lines.
3. **Scope rules**: a match inside quotation marks, after a reporting frame ("you were told to
   ..."), or after a negator in the same clause ("I would never tell you to calm down") is not
   something the speaker is doing, and is dropped.

No LLM is needed; a line takes a few milliseconds on 2 cores.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from bot.datafiles import read_yaml
from bot.errors import DataValidationError
from bot.guidance.catalogue import Behaviour, GuidanceCatalogue, Kind, load_catalogue
from bot.guidance.classifier import (
    CATALOGUE_WEIGHT,
    LineClassifier,
    LineInputs,
    Thresholds,
    TrainingLine,
    line_features,
    load_thresholds,
    training_digest,
)

CLASSIFIER_VERSION = "softmax-1"


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detection:
    """A behaviour found in a line, with the words that show it."""

    behaviour_id: str
    kind: Kind
    name: str
    confidence: float
    evidence: str
    start: int
    end: int
    method: Literal["pattern", "semantic", "context"]
    # False for a classifier-only hit below the catalogue's bar: the customer does not react
    # to it and the scorecard does not count it; the debrief shows it as "possible".
    certain: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectionContext:
    """What surrounds the line: the customer's last words help spot reflecting back."""

    customer_last: str | None = None


# Clause boundaries for negation and reporting scope.
_CLAUSE_BREAK = re.compile(r"[.!?;:—–]|,|\s-\s|\b(?:but|however|though|although|because)\b", re.I)
_SENTENCE = re.compile(r"[^.!?…]+(?:[.!?…]+|$)")
_NEGATOR = re.compile(
    r"\b(?:never|not|no one|nobody|won['’]?t|wouldn['’]?t|don['’]?t|didn['’]?t|shouldn['’]?t|"
    r"isn['’]?t going to|refuse to|avoid|instead of|rather than)\b",
    re.I,
)
_NOT_A_NEGATION = re.compile(r"\bwhy (?:don['’]?t|not)\b|\bnot only\b|\bif not\b", re.I)
# Someone else's words, reported: passive "you were told", or a third party who said it.
# A question that invites the customer to say more ("Is there anything else worrying you?"): the
# articles' own advice, never a trigger unless a trigger's own words are in it.
_INVITATION = re.compile(
    r"\b(?:anything|something|what)\s+else\b[^.!?]*\?|\b(?:tell me more|go on)\b", re.I
)
_REPORTING = re.compile(
    r"\b(?:were|was|been|being|get|got)\s+told\b"
    r"|\b(?:he|she|they|someone|somebody|everyone|people|staff|nobody|no one|you)\s+"
    r"(?:\w+\s+)?(?:said|says|told|tells|claimed|suggested|mentioned|called)\b"
    r"|\b(?:the|your|my|our|an?|that|this|another|other)\s+(?:\w+\s+)?(?:agent|person|colleague|"
    r"manager|advisor|adviser|rep|representative|guy|lady|man|woman|team|engineer|staff|driver|"
    r"operator|supervisor)s?\s+(?:\w+\s+)?(?:said|says|told|tells|claimed|suggested|called)\b",
    re.I,
)
# A denied speech act: "I would never tell you to ...", "I'm not going to blame ...".
_NEGATED_FRAME = re.compile(
    r"\b(?:never|not|no one|nobody|won['’]?t|wouldn['’]?t|don['’]?t|shouldn['’]?t|refuse to)\b"
    r"(?:\s+[\w'’]+){0,4}?\s+(?:tell|telling|say|saying|blame|blaming|hide|hiding|transfer|"
    r"transferring|pass|passing|fob|send|sending|argue|arguing|ask you to|make you|point you|"
    r"quote|quoting|cite|citing|lecture|lecturing|bounce|bouncing|palm|redirect|make excuses|"
    r"shift|dismiss|dismissing|brush|brushing|patroni[sz]e|interrupt|contradict|minimi[sz]e)\b",
    re.I,
)
_QUOTED = re.compile(
    r"[\"“]([^\"“”]{2,}?)[\"”]"  # double quotes
    r"|(?<![\w])['‘]([^'‘’]{2,}?)['’](?![\w])"  # single quotes, not contractions
)


# A conceded point ("I know it's only a tenner, but ..."): the speaker grants it and then turns to
# what matters, so the granted clause is not their own act.
_CONCESSION_OPENER = re.compile(
    r"(?:^|\b)(?:(?:i|we)\s+(?:do\s+)?(?:know|realise|realize|understand|get|appreciate|recognise|"
    r"recognize|accept|see)|granted|admittedly|of course|sure)\s*(?:,\s*)?(?:that\s+)?$",
    re.I,
)
_CONCESSION_TURN = re.compile(r"\b(?:but|though|however|yet|still)\b", re.I)


def _conceded(text: str, start: int, end: int) -> bool:
    """True if [start, end) follows an "I know" that its sentence then turns from with "but"."""
    sentence_start, sentence_end = next(
        ((s, e) for s, e in split_sentences(text) if s <= start < e), (0, len(text))
    )
    opener = text[sentence_start:start].strip()
    return bool(
        _CONCESSION_OPENER.search(opener) and _CONCESSION_TURN.search(text, end, sentence_end)
    )


def _opens_conceding(text: str, start: int, end: int) -> bool:
    """True if the unit at [start, end) opens with "I know (that)" and its sentence turns with
    "but" after it: what it grants is not the speaker's own act."""
    words = text[start:end].split()
    for size in (3, 2, 1):
        lead = " ".join(words[:size])
        if _CONCESSION_OPENER.search(lead):
            after_lead = text.index(words[size - 1], start) + len(words[size - 1])
            return _conceded(text, after_lead, after_lead)
    return False


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _QUOTED.finditer(text)]


def _clause_start(text: str, position: int) -> int:
    start = 0
    for match in _CLAUSE_BREAK.finditer(text, 0, position):
        start = match.end()
    return start


def scope_blocked(text: str, start: int, end: int, behaviour_id: str = "") -> str | None:
    """Why a match at [start, end) is not the speaker's own act, or None if it is."""
    for q_start, q_end in _quoted_spans(text):
        if q_start <= start and end <= q_end:
            return "quoted"
    lead = text[_clause_start(text, start) : start]
    lead = _NOT_A_NEGATION.sub(" ", lead)
    if _NEGATOR.search(lead):
        return "negated"
    if behaviour_id not in _REPORTING_IS_THE_BEHAVIOUR and _REPORTING.search(lead):
        return "reported"
    if _conceded(text, start, end):
        return "conceded"
    return None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end), trimmed of surrounding space."""
    spans = []
    for match in _SENTENCE.finditer(text):
        raw = match.group(0)
        left = len(raw) - len(raw.lstrip())
        right = len(raw.rstrip())
        if right > left:
            spans.append((match.start() + left, match.start() + right))
    return spans or [(0, len(text))]


_WORD = re.compile(r"[a-z']+")
_STOP = set(
    "a an the i you we they he she it me my your our to of in on at for and or but so is are "
    "was were be been have has had do did just that this with as not no yes what how can could "
    "would will i'm you're it's that's don't can't won't i've i'll i'd there their them then "
    "than from about into out up down over off again all any some more most very really even "
    "still now right get got getting want wanted need needs know think like going make made take "
    "time way thing things one two much many well only also back day today said say tell told "
    "see look come came go went let thank thanks please sorry okay ok fine sure".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def semantic_units(text: str) -> list[tuple[int, int]]:
    """Sentences, plus their clauses when a sentence has several (one behaviour per unit)."""
    units: list[tuple[int, int]] = []
    for start, end in split_sentences(text):
        units.append((start, end))
        cuts = [m for m in _CLAUSE_BREAK.finditer(text, start, end) if m.end() < end - 1]
        if not cuts:
            continue
        edges = [start, *[m.end() for m in cuts], end]
        for left, right in itertools.pairwise(edges):
            piece = text[left:right]
            if len(_WORD.findall(piece.lower())) >= 3:
                offset = len(piece) - len(piece.lstrip())
                units.append((left + offset, right))
    return units


# Behaviours that refer to what was said before: a reporting frame is part of them
# ("as you were told" is itself the trigger), so it does not mean someone else's words.
_REPORTING_IS_THE_BEHAVIOUR = {"as_i_told_you"}


def unit_blocked(text: str, start: int, end: int, behaviour_id: str = "") -> bool:
    """True if a semantic unit is quoted, negated or reported speech."""
    unit = text[start:end]
    if any(q_start <= start + 2 and end - 2 <= q_end for q_start, q_end in _quoted_spans(text)):
        return True
    reported = behaviour_id not in _REPORTING_IS_THE_BEHAVIOUR and _REPORTING.search(unit)
    conceded = _opens_conceding(text, start, end)
    return bool(_quoted_spans(unit) or _NEGATED_FRAME.search(unit) or reported or conceded)


@dataclass
class SoftmaxClassifier:
    """Multinomial logistic regression on sentence embeddings (numpy, trained in ~0.1 s)."""

    weights: np.ndarray  # [dims, classes]
    bias: np.ndarray  # [classes]

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        l2: float = 1e-4,
        learning_rate: float = 8.0,
        epochs: int = 2000,
    ) -> SoftmaxClassifier:
        n, dims = features.shape
        weights = np.zeros((dims, n_classes), dtype=np.float64)
        bias = np.zeros(n_classes, dtype=np.float64)
        onehot = np.eye(n_classes)[labels]
        x = features.astype(np.float64)
        for _ in range(epochs):
            probs = _softmax(x @ weights + bias)
            grad = (probs - onehot) / n
            weights -= learning_rate * (x.T @ grad + l2 * weights)
            bias -= learning_rate * grad.sum(axis=0)
        return cls(weights.astype(np.float32), bias.astype(np.float32))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _softmax(features @ self.weights + self.bias)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class GuidanceEngine:
    """Detects catalogue behaviours in a line of agent speech."""

    #: minimum classifier probability for a semantic detection, per kind (see docs/GUIDANCE.md)
    thresholds: dict[str, float] = {"do": 0.55, "avoid": 0.6}  # noqa: RUF012
    #: an avoid-behaviour found in a clause needs at least this probability for its sentence
    clause_support: float = 0.1

    def __init__(
        self,
        catalogue: GuidanceCatalogue,
        embeddings: Embeddings | None = None,
        cache_dir: Path | None = None,
        training: list[TrainingLine] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.embeddings = embeddings
        self.cache_dir = cache_dir
        self.training = training  # labelled lines: with them, the line classifier decides
        self.bars = thresholds or Thresholds()
        self._line_classifier: LineClassifier | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._vectors_lock = threading.Lock()
        self._patterns = {
            b.id: [re.compile(p, re.IGNORECASE) for p in b.patterns] for b in catalogue.behaviours
        }
        self._by_id = {b.id: b for b in catalogue.behaviours}
        self._classifier: SoftmaxClassifier | None = None
        self._lock = threading.Lock()
        self._vector_memory = 4096  # sentence vectors remembered

    # -- semantic classifier over the examples
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors; the last few thousand texts are remembered (a line's sentences are
        embedded once for both classifiers)."""
        with self._vectors_lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = dict(zip(missing, self._embed_now(missing), strict=True))
            known.update(fresh)
            with self._vectors_lock:  # forgetting old vectors never loses this call's
                if len(self._vectors) + len(fresh) > self._vector_memory:
                    self._vectors.clear()
                self._vectors.update(fresh)
        return np.stack([known[t] for t in texts])

    def forget_vectors(self) -> None:
        """Drop the remembered sentence vectors (benchmarks time a line as if new)."""
        with self._vectors_lock:
            self._vectors.clear()

    def _embed_now(self, texts: list[str]) -> np.ndarray:
        assert self.embeddings is not None
        if hasattr(self.embeddings, "embed_array"):
            return np.asarray(self.embeddings.embed_array(texts), dtype=np.float32)
        vectors = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)

    def _ensure_index(self) -> None:
        if self._classifier is not None or self.embeddings is None:
            return
        with self._lock:
            if self._classifier is not None:
                return
            texts: list[str] = []
            labels: list[int] = []
            for index, behaviour in enumerate(self.catalogue.behaviours):
                texts += behaviour.examples
                labels += [index] * len(behaviour.examples)
            neutral_label = len(self.catalogue.behaviours)
            texts += self.catalogue.neutral_examples
            labels += [neutral_label] * len(self.catalogue.neutral_examples)
            cached = self._cache_path(texts, labels)
            if cached is not None and cached.is_file():
                with np.load(cached) as data:
                    self._classifier = SoftmaxClassifier(data["weights"], data["bias"])
                return
            self._classifier = SoftmaxClassifier.fit(
                self._embed(texts), np.array(labels), n_classes=neutral_label + 1
            )
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_name(f".{cached.stem}.{threading.get_ident()}.npz")
                np.savez(tmp, weights=self._classifier.weights, bias=self._classifier.bias)
                os.replace(tmp, cached)

    def _ensure_line_classifier(self) -> None:
        self._ensure_index()
        if self._line_classifier is not None or self._classifier is None or not self.training:
            return
        with self._lock:
            if self._line_classifier is not None:
                return
            rows = self._training_rows()
            cached = self._line_cache_path(rows)
            if cached is not None and cached.is_file():
                self._line_classifier = LineClassifier.load(cached)
                return
            features = np.stack([self._features(text, context) for text, context, _, _ in rows])
            labels = np.array([[b in expect for b in self.catalogue.ids] for *_, expect, _ in rows])
            weights = np.array([weight for *_, weight in rows])
            self._line_classifier = LineClassifier.fit(
                self.catalogue.ids, features, labels.astype(int), weights
            )
            if cached is not None:
                self._line_classifier.save(cached)

    def _training_rows(self) -> list[tuple[str, str | None, tuple[str, ...], float]]:
        """(text, context, behaviours, weight): the catalogue's examples and neutral lines at
        half weight, then the labelled trainee lines."""
        rows = [
            (example, None, (behaviour.id,), CATALOGUE_WEIGHT)
            for behaviour in self.catalogue.behaviours
            for example in behaviour.examples
        ]
        rows += [(line, None, (), CATALOGUE_WEIGHT) for line in self.catalogue.neutral_examples]
        rows += [(line.text, line.context, line.expect, 1.0) for line in self.training or []]
        return rows

    def _line_cache_path(
        self, rows: list[tuple[str, str | None, tuple[str, ...], float]]
    ) -> Path | None:
        if self.cache_dir is None:
            return None
        model = getattr(self.embeddings, "model_name", type(self.embeddings).__name__)
        patterns = [b.patterns for b in self.catalogue.behaviours]
        digest = training_digest(model, [rows, patterns, self.catalogue.ids])
        return self.cache_dir / f"guidance-lines-{digest}.npz"

    def _pattern_vectors(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Per behaviour: a pattern matches in scope; a pattern matches but is blocked."""
        in_scope = np.zeros(len(self.catalogue.behaviours), dtype=np.float32)
        blocked = np.zeros(len(self.catalogue.behaviours), dtype=np.float32)
        for j, behaviour in enumerate(self.catalogue.behaviours):
            for pattern in self._patterns[behaviour.id]:
                for match in pattern.finditer(text):
                    if match.end() == match.start():
                        continue
                    if scope_blocked(text, match.start(), match.end(), behaviour.id):
                        blocked[j] = 1.0
                    else:
                        in_scope[j] = 1.0
        return in_scope, blocked

    def _features(
        self, text: str, context: str | None, vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """The line classifier's features (``vectors``: the line's, then its units', if known)."""
        assert self._classifier is not None
        units = semantic_units(text)
        if vectors is None:
            vectors = self._embed([text] + [text[s:e] for s, e in units])
        probabilities = self._classifier.predict_proba(vectors)
        in_scope, blocked = self._pattern_vectors(text)
        return line_features(
            LineInputs(
                text=text,
                vector=vectors[0],
                softmax_line=probabilities[0],
                softmax_units=probabilities[1:],
                pattern_in_scope=in_scope,
                pattern_blocked=blocked,
                playback=_playback(text, context),
            )
        )

    def line_probabilities(self, text: str, context: str | None = None) -> dict[str, float]:
        """The line classifier's probability for each behaviour ({} without one)."""
        self._ensure_line_classifier()
        if self._line_classifier is None or not text.strip():
            return {}
        row = self._line_classifier.predict(self._features(text, context))[0]
        return dict(zip(self._line_classifier.ids, (float(p) for p in row), strict=True))

    def _cache_path(self, texts: list[str], labels: list[int]) -> Path | None:
        """Where the trained classifier for exactly these examples is kept (None: no cache)."""
        if self.cache_dir is None:
            return None
        model = getattr(self.embeddings, "model_name", type(self.embeddings).__name__)
        digest = hashlib.sha256(
            json.dumps([CLASSIFIER_VERSION, model, texts, labels]).encode()
        ).hexdigest()[:20]
        return self.cache_dir / f"guidance-{digest}.npz"

    def embed(self, texts: list[str]) -> np.ndarray | None:
        """Unit-length sentence vectors (None without embeddings)."""
        return None if self.embeddings is None else self._embed(texts)

    def likeliest(self, text: str, kind: Kind) -> tuple[Behaviour, float] | None:
        """The behaviour of ``kind`` the classifier finds most likely in ``text``, and its
        probability (None without embeddings)."""
        self._ensure_index()
        if self._classifier is None:
            return None
        probabilities = self._classifier.predict_proba(self._embed([text]))[0]
        candidates = [i for i, b in enumerate(self.catalogue.behaviours) if b.kind == kind]
        best = max(candidates, key=lambda i: probabilities[i])
        return self.catalogue.behaviours[best], float(probabilities[best])

    def warm_up(self) -> None:
        """Train the classifiers now rather than on the first line."""
        self._ensure_line_classifier()

    # -- detection
    def _pattern_hits(self, text: str, scoped: bool = True) -> dict[str, Detection]:
        found: dict[str, Detection] = {}
        for behaviour in self.catalogue.behaviours:
            for pattern in self._patterns[behaviour.id]:
                for match in pattern.finditer(text):
                    if match.end() == match.start():
                        continue
                    if scoped and scope_blocked(text, match.start(), match.end(), behaviour.id):
                        continue
                    found.setdefault(
                        behaviour.id,
                        Detection(
                            behaviour.id,
                            behaviour.kind,
                            behaviour.name,
                            0.95,
                            match.group(0).strip(),
                            match.start(),
                            match.end(),
                            "pattern",
                        ),
                    )
                    break
                if behaviour.id in found:
                    break
        return found

    def _semantic_hits(
        self, text: str, skip: set[str], pattern_hits: list[Detection], scoped: bool = True
    ) -> dict[str, Detection]:
        self._ensure_index()
        if self._classifier is None:
            return {}
        units = semantic_units(text)
        probabilities = self._classifier.predict_proba(self._embed([text[s:e] for s, e in units]))
        # Rows of the whole sentences (semantic_units lists each sentence before its clauses).
        sentence_spans = set(split_sentences(text))
        sentence_rows = {
            span: row
            for span, row in zip(units, probabilities, strict=True)
            if span in sentence_spans
        }
        found: dict[str, Detection] = {}
        n_behaviours = len(self.catalogue.behaviours)
        for (start, end), row in zip(units, probabilities, strict=True):
            index = int(np.argmax(row))
            score = float(row[index])
            if index >= n_behaviours:
                continue  # a neutral service line
            behaviour = self.catalogue.behaviours[index]
            if score < self.thresholds[behaviour.kind]:
                continue
            if behaviour.id in skip:
                continue
            if behaviour.kind == "avoid":
                if scoped and unit_blocked(text, start, end, behaviour.id):
                    continue
                if any(h.kind == "do" and h.start < end and start < h.end for h in pattern_hits):
                    continue  # a precise pattern already says what this part of the line does
                sentence = next(
                    (
                        row2
                        for (s2, e2), row2 in sentence_rows.items()
                        if s2 <= start and end <= e2 and (s2, e2) != (start, end)
                    ),
                    None,
                )
                if sentence is not None and float(sentence[index]) < self.clause_support:
                    continue  # a clause read out of its sentence: the sentence does not agree
            previous = found.get(behaviour.id)
            if previous is None or score > previous.confidence:
                found[behaviour.id] = Detection(
                    behaviour.id,
                    behaviour.kind,
                    behaviour.name,
                    round(min(score, 0.9), 3),
                    text[start:end].strip(),
                    start,
                    end,
                    "semantic",
                )
        return found

    def _context_hits(self, text: str, context: DetectionContext | None) -> dict[str, Detection]:
        if not context or not context.customer_last or "reflect_back" not in self._by_id:
            return {}
        theirs = content_words(context.customer_last)
        if len(theirs) < 3:
            return {}
        for start, end in split_sentences(text):
            sentence = text[start:end]
            mine = content_words(sentence)
            starts_reflecting = re.match(
                r"\s*(so|you['’]?re saying|you['’]?ve|you were|it sounds like)\b", sentence, re.I
            )
            if starts_reflecting and len(mine & theirs) >= max(2, int(0.3 * len(theirs))):
                behaviour = self._by_id["reflect_back"]
                return {
                    behaviour.id: Detection(
                        behaviour.id, "do", behaviour.name, 0.8, sentence, start, end, "context"
                    )
                }
        return {}

    def pattern_detections(self, text: str) -> list[Detection]:
        """The catalogue patterns the line matches (scope rules applied): exactly the
        ``method == "pattern"`` detections of :meth:`detect`, which never drops a pattern hit,
        without its vectors and classifiers."""
        return list(self._pattern_hits(text).values()) if text and text.strip() else []

    def detect(
        self, text: str, context: DetectionContext | None = None, scoped: bool = True
    ) -> list[Detection]:
        """Behaviours the line shows, most confident first (one detection per behaviour).

        ``scoped=False`` ignores the quotation / negation / reporting rules: for wording that
        will be handed to someone to say, where even a quoted trigger must not appear.
        """
        if not text or not text.strip():
            return []
        found = self._pattern_hits(text, scoped)
        semantic = self._semantic_hits(text, set(found), list(found.values()), scoped)
        for extra in (self._context_hits(text, context), semantic):
            for key, value in extra.items():
                found.setdefault(key, value)
        if scoped and self.training:
            customer = context.customer_last if context else None
            found = self._judged(text, found, self.line_probabilities(text, customer))
        return sorted(found.values(), key=lambda d: (-d.confidence, d.start))

    def _judged(
        self, text: str, found: dict[str, Detection], probabilities: dict[str, float]
    ) -> dict[str, Detection]:
        """The line classifier's verdict on every behaviour: sure above its bar, "possible"
        just below it, gone further down; a trigger pattern it strongly doubts is only
        possible (quoted, negated or invited lines the scope rules missed)."""
        if not probabilities:
            return found
        _, blocked = self._pattern_vectors(text)
        judged: dict[str, Detection] = {}
        for j, behaviour in enumerate(self.catalogue.behaviours):
            p = probabilities[behaviour.id]
            bar = self.bars.sure_for(behaviour.id)
            hit = found.get(behaviour.id)
            if hit is not None and hit.method in ("pattern", "context"):
                doubted = behaviour.kind == "avoid" and p < self.bars.veto
                judged[behaviour.id] = replace(hit, certain=not doubted)
            elif p >= self.bars.possible_ratio * bar:
                sure = p >= bar and not (
                    behaviour.kind == "avoid" and self._out_of_scope(text, hit, blocked[j])
                )
                where = hit or self._whole_line(behaviour, text)
                judged[behaviour.id] = replace(
                    where, confidence=round(p, 3), method="semantic", certain=sure
                )
        return judged

    @staticmethod
    def _out_of_scope(text: str, hit: Detection | None, pattern_blocked: float) -> bool:
        """A trigger the classifier sees but the scope rules speak against: its pattern only
        matches inside a quote, a negation or reported speech, or (with no scope-checked
        sentence behind it) the line denies or reports something, or invites the customer to
        say more. Never more than possible."""
        if pattern_blocked or _INVITATION.search(text):
            return True
        return hit is None and bool(_NEGATOR.search(text) or _REPORTING.search(text))

    @staticmethod
    def _whole_line(behaviour: Behaviour, text: str) -> Detection:
        start = len(text) - len(text.lstrip())
        return Detection(behaviour.id, behaviour.kind, behaviour.name, 0.0, text.strip(),
                         start, len(text.rstrip()), "semantic")  # fmt: skip


def _playback(text: str, context: str | None) -> np.ndarray:
    """[has a customer line, share of their words I use, share of my words that are theirs]."""
    if not context:
        return np.zeros(3, dtype=np.float32)
    theirs, mine = content_words(context), content_words(text)
    shared = len(theirs & mine)
    return np.array([1.0, shared / max(1, len(theirs)), shared / max(1, len(mine))], np.float32)


@lru_cache(maxsize=4)
def _cached_engine(
    path: str, semantic: bool, cache_dir: str | None, training: str | None
) -> GuidanceEngine:
    from bot.llm.embeddings import local_embeddings

    catalogue_path = Path(path)
    bars = catalogue_path.with_name("guidance_thresholds.yaml")
    return GuidanceEngine(
        load_catalogue(catalogue_path),
        local_embeddings() if semantic else None,
        cache_dir=Path(cache_dir) if cache_dir else None,
        training=load_training(Path(training)) if training and semantic else None,
        thresholds=load_thresholds(bars) if bars.is_file() else None,
    )


def default_engine(
    path: Path,
    semantic: bool = True,
    cache_dir: Path | None = None,
    training: Path | None = None,
) -> GuidanceEngine:
    """The process-wide engine over the catalogue at ``path`` with the local embeddings
    (classifiers cached under ``cache_dir`` when given). With ``training`` (a labelled set)
    the line classifier judges every detection, with the bars of ``guidance_thresholds.yaml``
    beside the catalogue.

    The classifiers always use the embedded MiniLM (fast, offline, and what the bars were
    chosen on), whatever embedding provider the knowledge index uses.
    """
    return _cached_engine(
        str(path.resolve()),
        semantic,
        str(cache_dir) if cache_dir else None,
        str(training.resolve()) if training else None,
    )


def load_training(path: Path) -> list[TrainingLine]:
    """A labelled set (``text``, ``expect``, optional ``context``) as training lines."""
    data = read_yaml(path)
    if not isinstance(data, list):
        raise DataValidationError(f"{path}: expected a list of labelled lines")
    lines = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not str(item.get("text", "")).strip():
            raise DataValidationError(f"{path}: field '[{index}].text': a line is needed")
        expect = tuple(item.get("expect") or ())
        lines.append(TrainingLine(str(item["text"]), expect, item.get("context")))
    return lines


def cited_source(behaviour: Behaviour, knowledge_dir: Path) -> dict[str, Any]:
    """The passage behind a behaviour, with the article's provenance."""
    doc = _documents(str(knowledge_dir.resolve())).get(behaviour.source.origin)
    return {
        "origin": behaviour.source.origin,
        "quote": behaviour.source.quote,
        "title": doc.meta.title if doc else None,
        "author": doc.meta.author if doc else None,
        "publisher": doc.meta.publisher if doc else None,
    }


@lru_cache(maxsize=2)
def _documents(knowledge_dir: str) -> dict[str, Any]:
    from bot.knowledge.documents import documents_by_origin

    return documents_by_origin(Path(knowledge_dir))
