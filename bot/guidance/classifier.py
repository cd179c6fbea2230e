"""The line classifier: one calibrated logistic regression per behaviour over a line's features.

Features (:func:`line_features`): the MiniLM embedding of the whole line; the example-softmax's
probabilities for the whole line and their maximum over its sentences and clauses; which
catalogue patterns match (in scope, and blocked by quotation, negation or reporting); the
lexical cues of :mod:`bot.guidance.features`; and how much of the customer's last line it
plays back. Trained with scikit-learn on the catalogue's examples (half weight) and the
independent train split (``evals/data/guidance/train.yaml``); cached by a hash of everything it
was trained on. The per-behaviour bars come from ``knowledge/guidance_thresholds.yaml``, chosen
on the dev split by ``scripts/tune_guidance.py`` with asymmetric costs (docs/GUIDANCE.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bot.datafiles import load_yaml_model
from bot.guidance.features import cues

CLASSIFIER_VERSION = "ovr-logreg-1"
CATALOGUE_WEIGHT = 0.5  # a catalogue example counts half as much as a labelled trainee line
REGULARISATION = 0.05  # scikit-learn's C: strong, the training set is small


class Thresholds(BaseModel):
    """The bars a classifier probability must clear (per behaviour), validated on load."""

    model_config = ConfigDict(extra="forbid")

    sure: dict[str, float] = Field(default_factory=dict)  # detected and acted on
    default_sure: float = Field(0.6, gt=0, lt=1)
    possible_ratio: float = Field(0.6, gt=0, le=1)  # from ratio x sure: shown as "possible"
    veto: float = Field(0.1, ge=0, lt=1)  # a trigger pattern the classifier doubts this much

    def sure_for(self, behaviour_id: str) -> float:
        return self.sure.get(behaviour_id, self.default_sure)


def load_thresholds(path: Path) -> Thresholds:
    return load_yaml_model(path, Thresholds, "classifier bars")


@dataclass(frozen=True)
class TrainingLine:
    """A labelled trainee line: every behaviour it shows, and the customer's line before it."""

    text: str
    expect: tuple[str, ...]
    context: str | None = None


@dataclass
class LineInputs:
    """What the features of one line are computed from (the engine supplies them)."""

    text: str
    vector: np.ndarray  # the whole line's embedding
    softmax_line: np.ndarray  # example-softmax probabilities of the whole line
    softmax_units: np.ndarray  # ... of each sentence and clause (rows)
    pattern_in_scope: np.ndarray  # per behaviour: a pattern matches and its scope allows it
    pattern_blocked: np.ndarray  # per behaviour: a pattern matches inside a quote/negation
    playback: np.ndarray  # [has context, share of their words, share of mine]


def line_features(inputs: LineInputs) -> np.ndarray:
    units_max = (
        inputs.softmax_units.max(axis=0) if len(inputs.softmax_units) else inputs.softmax_line
    )
    return np.concatenate(
        [
            inputs.vector,
            inputs.softmax_line,
            units_max,
            inputs.pattern_in_scope,
            inputs.pattern_blocked,
            cues(inputs.text),
            inputs.playback,
        ]
    ).astype(np.float32)


@dataclass
class LineClassifier:
    """Standardised features, then one logistic regression per behaviour."""

    ids: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # [behaviours, features]
    intercept: np.ndarray  # [behaviours]

    @classmethod
    def fit(
        cls, ids: list[str], features: np.ndarray, labels: np.ndarray, weights: np.ndarray
    ) -> LineClassifier:
        """``labels`` is [lines, behaviours] of 0/1; a behaviour with no positive never fires."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(features)
        x = scaler.transform(features)
        coef = np.zeros((len(ids), x.shape[1]), dtype=np.float32)
        intercept = np.full(len(ids), -20.0, dtype=np.float32)
        for j in range(len(ids)):
            if labels[:, j].min() == labels[:, j].max():
                continue
            model = LogisticRegression(C=REGULARISATION, max_iter=2000, class_weight="balanced")
            model.fit(x, labels[:, j], sample_weight=weights)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
        return cls(ids, scaler.mean_.astype(np.float32), scale.astype(np.float32), coef, intercept)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [lines, behaviours]."""
        x = (np.atleast_2d(features) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(x @ self.coef.T + self.intercept)))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.npz")
        np.savez(tmp, ids=np.array(self.ids), mean=self.mean, scale=self.scale,
                 coef=self.coef, intercept=self.intercept)  # fmt: skip
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LineClassifier:
        with np.load(path) as data:
            return cls([str(i) for i in data["ids"]], data["mean"], data["scale"],
                       data["coef"], data["intercept"])  # fmt: skip


def training_digest(model_name: str, payload: object) -> str:
    """The cache key of a classifier trained on ``payload`` with embeddings ``model_name``."""
    text = json.dumps([CLASSIFIER_VERSION, model_name, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
