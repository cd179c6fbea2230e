"""The line classifier: a small multi-label neural network (an ensemble of scikit-learn MLPs,
one hidden layer) over a line's features, one sigmoid output per behaviour.

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bot.datafiles import load_yaml_model
from bot.guidance.features import cues

CLASSIFIER_VERSION = "mlp-ensemble-2"  # 2: scope rules grant concessions
CATALOGUE_WEIGHT = 0.5  # a catalogue example counts half as much as a labelled trainee line
HIDDEN_UNITS = 64
REGULARISATION = 1.0  # the MLPs' L2 penalty (alpha): strong, the training set is small
ENSEMBLE = 3  # networks from different seeds, averaged
# Chosen on the dev split (docs/GUIDANCE.md): per-behaviour logistic regression cost 224 ± 18
# (2-fold crossfit of the bars on dev), this ensemble 185 ± 10.


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
    """Standardised features, then the averaged sigmoid outputs of a few small MLPs."""

    ids: list[str]
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # W1, b1, W2, b2

    @classmethod
    def fit(
        cls, ids: list[str], features: np.ndarray, labels: np.ndarray, weights: np.ndarray
    ) -> LineClassifier:
        """``labels`` is [lines, behaviours] of 0/1, ``weights`` one per line."""
        from sklearn.neural_network import MLPClassifier
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(features)
        x = scaler.transform(features)
        layers = []
        for seed in range(ENSEMBLE):
            net = MLPClassifier((HIDDEN_UNITS,), alpha=REGULARISATION, max_iter=300,
                                random_state=seed)  # fmt: skip
            with warnings.catch_warnings():  # a capped run of iterations is fine here
                warnings.simplefilter("ignore")
                net.fit(x, labels, sample_weight=weights)
            w1, w2 = (np.asarray(c, dtype=np.float32) for c in net.coefs_)
            b1, b2 = (np.asarray(b, dtype=np.float32) for b in net.intercepts_)
            layers.append((w1, b1, w2, b2))
        scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
        return cls(ids, scaler.mean_.astype(np.float32), scale.astype(np.float32), layers)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [lines, behaviours]."""
        x = (np.atleast_2d(features) - self.mean) / self.scale
        outputs = []
        for w1, b1, w2, b2 in self.layers:
            hidden = np.maximum(x @ w1 + b1, 0.0)
            outputs.append(1.0 / (1.0 + np.exp(-(hidden @ w2 + b2))))
        return np.mean(outputs, axis=0)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.npz")
        arrays = {f"{name}{i}": a for i, layer in enumerate(self.layers)
                  for name, a in zip(("w1_", "b1_", "w2_", "b2_"), layer, strict=True)}  # fmt: skip
        np.savez(tmp, ids=np.array(self.ids), mean=self.mean, scale=self.scale, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LineClassifier:
        with np.load(path) as data:
            count = sum(1 for key in data.files if key.startswith("w1_"))
            layers = [tuple(data[f"{n}{i}"] for n in ("w1_", "b1_", "w2_", "b2_"))
                      for i in range(count)]  # fmt: skip
            return cls([str(i) for i in data["ids"]], data["mean"], data["scale"], layers)  # type: ignore[arg-type]


def training_digest(model_name: str, payload: object) -> str:
    """The cache key of a classifier trained on ``payload`` with embeddings ``model_name``."""
    text = json.dumps([CLASSIFIER_VERSION, model_name, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
