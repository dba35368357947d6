"""Held-out data: the split, what the run remembers about it, and the scores it is judged by.

Cascade-Correlation makes choosing the size on held-out data exact and cheap: installed units
never change, so the network with its first k units *is* a prefix of the final one, and only
the output weights it had at that moment must be kept. :class:`ValidationState` keeps them
(the best network so far), and the split itself, so a resumed run validates on the very same
rows and stops at the very same unit.

The split is drawn from stream (2,) of the run's seed (never a global generator), stratified
by class for classification; the held-out row numbers are stored, so a resume does not depend
on how a library version shuffles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import DataError, StateError

SPLIT_STREAM = 2  # derived_seed(seed, SPLIT_STREAM): the validation split


def split_indices(n: int, fraction: float, seed: int, strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows ascending, held-out rows) of ``n`` patterns, ``fraction`` of them held out.

    Stratified when ``strata`` (a label per row) allows it: every class with at least two rows
    and room for one row of each class on both sides; otherwise a plain random split.
    """
    from sklearn.model_selection import train_test_split

    from .seeds import derived_seed

    n_val = int(math.ceil(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"validation_fraction={fraction} of {n} patterns leaves "
                        f"{n - n_val} for training and {n_val} for validation; need at least one of each")
    if strata is not None:
        _, counts = np.unique(strata, return_counts=True, axis=0)
        if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
            strata = None
    rng = np.random.RandomState(derived_seed(seed, SPLIT_STREAM) % 2**32)
    _, val = train_test_split(np.arange(n), test_size=n_val, stratify=strata, random_state=rng)
    val = np.asarray(val, dtype=np.int64)
    return training_rows(val, n), val


def training_rows(held_out: np.ndarray, n: int) -> np.ndarray:
    """The rows of ``n`` that are not held out, ascending (the order training sees them in)."""
    mask = np.ones(n, dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask).astype(np.int64)


def class_labels(Y: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The class of each encoded target row (one output: above the midpoint; else the argmax)."""
    if Y.shape[1] == 1:
        return (Y[:, 0] > (low + high) / 2).to(torch.int64)
    return Y.argmax(dim=1)


def loss_and_score(out: torch.Tensor, Y: torch.Tensor, task: str, low: float, high: float,
                   weights: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean squared error, accuracy or R^2) of outputs ``out`` against encoded targets ``Y``,
    weighted per pattern when ``weights`` are given.

    R^2 is scikit-learn's (per output, then averaged: see :func:`r2`); NaN when a target is
    constant."""
    diff = out.to(torch.float64) - Y.to(torch.float64)
    w = None if weights is None else weights.to(torch.float64)
    per_row = (diff * diff).mean(dim=1)
    loss = float(per_row.mean() if w is None else (per_row * w).sum() / w.sum())
    if task == "classification":
        right = (class_labels(out, low, high) == class_labels(Y, low, high)).to(torch.float64)
        score = float(right.mean() if w is None else (right * w).sum() / w.sum())
    else:
        score = r2(out, Y, weights)
    return loss, score


def r2(out: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """scikit-learn's ``r2_score`` (uniform average over outputs, optional sample weights), in
    torch: it runs after every output phase, where sklearn's input checks cost more than the
    phase's own scoring (and its import ~2 s on first use). Equal to sklearn's (a test checks);
    NaN, not sklearn's 0 or 1, when a target is constant or there is one pattern."""
    y, p = Y.to(torch.float64), out.to(torch.float64)
    w = torch.ones(y.shape[0], 1, dtype=torch.float64) if weights is None else weights.to(torch.float64).reshape(-1, 1)
    if y.shape[0] < 2:
        return float("nan")
    mean = (w * y).sum(dim=0) / w.sum()
    total = (w * (y - mean) ** 2).sum(dim=0)
    if not bool((total > 0).all()):
        return float("nan")
    residual = (w * (y - p) ** 2).sum(dim=0)
    return float((1.0 - residual / total).mean())


@dataclass
class ValidationState:
    """The held-out data's part of the training state.

    ``index`` are the rows of the data given to the run that are held out (None when the run
    validates on separate data); ``digest`` fingerprints the held-out data. ``best_*`` describe
    the best network seen at an output phase's end: its unit count, score, loss and output
    weights ``[outputs, 1 + inputs + best_n_units]``; ``since_best`` counts the phase ends since
    the score last improved by more than ``tol``.
    """

    n_patterns: int
    n_total: int
    digest: str = ""
    index: np.ndarray | None = None
    best_n_units: int = -1
    best_score: float = float("nan")
    best_loss: float = float("nan")
    since_best: int = 0
    best_weights: torch.Tensor | None = field(default=None, repr=False)

    def observe(self, n_units: int, loss: float, score: float, weights: torch.Tensor, tol: float) -> None:
        """One output phase's end, by scikit-learn's rule: the patience counter grows unless the
        score beats the best by at least ``tol``; the best network is replaced on any gain."""
        first = self.best_n_units < 0
        known = not math.isnan(score)
        old = self.best_score
        gained = first or (known and (math.isnan(old) or score >= old + tol))
        self.since_best = 0 if gained else self.since_best + 1
        if first or (known and (math.isnan(old) or score > old)):
            self.best_n_units, self.best_score, self.best_loss = n_units, score, loss
            self.best_weights = weights.clone()

    def state_dict(self, copy: bool = True) -> dict:
        c = torch.clone if copy else torch.Tensor.detach
        return {"n_patterns": self.n_patterns, "n_total": self.n_total, "digest": self.digest,
                "index": None if self.index is None else (self.index.copy() if copy else self.index),
                "best_n_units": self.best_n_units, "best_score": self.best_score, "best_loss": self.best_loss,
                "since_best": self.since_best,
                "best_weights": None if self.best_weights is None else c(self.best_weights)}

    @classmethod
    def from_state_dict(cls, state: dict, n_inputs: int, n_outputs: int) -> "ValidationState":
        try:
            v = cls(int(state["n_patterns"]), int(state["n_total"]), str(state["digest"]))
            index = state["index"]
            v.index = None if index is None else np.asarray(index, dtype=np.int64).copy()
            v.best_n_units, v.since_best = int(state["best_n_units"]), int(state["since_best"])
            v.best_score, v.best_loss = float(state["best_score"]), float(state["best_loss"])
            w = state["best_weights"]
        except KeyError as exc:
            raise StateError(f"validation state is missing {exc}") from None
        if v.index is not None and (v.index.shape != (v.n_patterns,) or v.n_patterns >= v.n_total
                                    or (v.n_patterns and (v.index.min() < 0 or v.index.max() >= v.n_total))
                                    or len(np.unique(v.index)) != v.n_patterns):
            raise StateError(f"validation rows do not fit: {v.n_patterns} distinct rows in [0, {v.n_total}) expected")
        if (w is None) != (v.best_n_units < 0):
            raise StateError("validation state: best weights and best unit count disagree")
        if w is not None:
            w = torch.as_tensor(w, dtype=torch.float32)
            shape = (n_outputs, 1 + n_inputs + v.best_n_units)
            if tuple(w.shape) != shape:
                raise StateError(f"validation best weights: expected shape {shape}, found {tuple(w.shape)}")
            v.best_weights = w.clone()
        return v
