"""What happened during a run, epoch by epoch and unit by unit, with stable keys.

Epoch columns are typed ``array.array`` buffers while training: appends are as cheap as a
list's, and ``state_dict`` (taken at every checkpoint) is one memcpy per column instead of a
Python-level conversion. Keys are part of the snapshot format: rename nothing, only add.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from .errors import StateError

PHASE_OUTPUT = 0
PHASE_CANDIDATES = 1

# Per-epoch columns: total epoch count after the epoch, phase code, hidden units at the time,
# output-phase sum of squared errors and wrong bits (NaN / -1 in candidate epochs), and the
# best candidate score (NaN in output epochs).
EPOCH_KEYS = ("epoch", "phase", "hidden_units", "true_error", "error_bits", "best_score")
# Per-install columns.
UNIT_KEYS = ("epoch", "candidate", "score", "activation", "steepness")
# Per output-phase end (format 1.2): the network of ``hidden_units`` units as it stood then,
# scored on the training data (the phase's last measured epoch) and on held-out data (NaN when
# there is none). Loss is the mean squared output error; score is accuracy or R^2.
SCORE_KEYS = ("epoch", "hidden_units", "train_loss", "train_score", "val_loss", "val_score")

_EPOCH_DTYPES = {"epoch": np.int64, "phase": np.int8, "hidden_units": np.int32,
                 "true_error": np.float64, "error_bits": np.int64, "best_score": np.float64}
_EPOCH_CODES = {"epoch": "q", "phase": "b", "hidden_units": "i", "true_error": "d", "error_bits": "q",
                "best_score": "d"}
_UNIT_DTYPES = {"epoch": np.int64, "candidate": np.int32, "score": np.float64,
                "steepness": np.float64}
SCORE_DTYPES = {"epoch": np.int64, "hidden_units": np.int32, "train_loss": np.float64, "train_score": np.float64,
                "val_loss": np.float64, "val_score": np.float64}


class History:
    def __init__(self) -> None:
        self.epochs: dict[str, array] = {k: array(_EPOCH_CODES[k]) for k in EPOCH_KEYS}
        self.units: dict[str, list] = {k: [] for k in UNIT_KEYS}
        self.scores: dict[str, list] = {k: [] for k in SCORE_KEYS}

    def __len__(self) -> int:
        return len(self.epochs["epoch"])

    def add_output_epoch(self, epoch: int, hidden: int, true_error: float, error_bits: int) -> None:
        e = self.epochs
        e["epoch"].append(epoch)
        e["phase"].append(PHASE_OUTPUT)
        e["hidden_units"].append(hidden)
        e["true_error"].append(true_error)
        e["error_bits"].append(error_bits)
        e["best_score"].append(math.nan)

    def add_candidate_epoch(self, epoch: int, hidden: int, best_score: float) -> None:
        e = self.epochs
        e["epoch"].append(epoch)
        e["phase"].append(PHASE_CANDIDATES)
        e["hidden_units"].append(hidden)
        e["true_error"].append(math.nan)
        e["error_bits"].append(-1)
        e["best_score"].append(best_score)

    def add_unit(self, epoch: int, candidate: int, score: float, activation: str, steepness: float) -> None:
        u = self.units
        u["epoch"].append(epoch)
        u["candidate"].append(candidate)
        u["score"].append(score)
        u["activation"].append(activation)
        u["steepness"].append(steepness)

    def add_scores(self, epoch: int, hidden: int, train_loss: float, train_score: float, val_loss: float,
                   val_score: float) -> None:
        for key, value in zip(SCORE_KEYS, (epoch, hidden, train_loss, train_score, val_loss, val_score)):
            self.scores[key].append(value)

    def to_dict(self) -> dict:
        """Plain Python lists (for estimators' ``history_`` and JSON)."""
        return {"epochs": {k: v.tolist() for k, v in self.epochs.items()},
                "units": {k: list(v) for k, v in self.units.items()},
                "scores": {k: list(v) for k, v in self.scores.items()}}

    def state_dict(self) -> dict:
        return state_from_columns(self.epochs, self.units, self.scores)

    def load_state_dict(self, state: dict) -> None:
        try:
            epochs = {k: array(_EPOCH_CODES[k], np.asarray(state["epochs"][k], dtype=_EPOCH_DTYPES[k]).tobytes())
                      for k in EPOCH_KEYS}
            units = {k: list(state["units"][k]) if k == "activation"
                     else np.asarray(state["units"][k]).tolist() for k in UNIT_KEYS}
            scores = {k: np.asarray(state["scores"][k], dtype=SCORE_DTYPES[k]).tolist() for k in SCORE_KEYS}
        except (KeyError, TypeError) as exc:
            raise StateError(f"history is missing column {exc}") from None
        lengths = {len(v) for v in epochs.values()}
        if len(lengths) > 1:
            raise StateError(f"history epoch columns differ in length: {sorted(lengths)}")
        lengths = {len(v) for v in units.values()}
        if len(lengths) > 1:
            raise StateError(f"history unit columns differ in length: {sorted(lengths)}")
        lengths = {len(v) for v in scores.values()}
        if len(lengths) > 1:
            raise StateError(f"history score columns differ in length: {sorted(lengths)}")
        units["activation"] = [str(a) for a in units["activation"]]
        self.epochs, self.units, self.scores = epochs, units, scores


def state_from_columns(epochs: dict, units: dict, scores: dict) -> dict:
    """``History.state_dict()`` from the raw columns: epoch columns as any buffer of their typed
    values (the live ``array.array`` or its bytes, as the snapshot helper receives them)."""
    return {
        "epochs": {k: np.frombuffer(epochs[k], dtype=_EPOCH_DTYPES[k]).copy() for k in EPOCH_KEYS},
        "units": {k: list(units[k]) if k == "activation" else np.asarray(units[k], dtype=_UNIT_DTYPES[k])
                  for k in UNIT_KEYS},
        "scores": {k: np.asarray(scores[k], dtype=SCORE_DTYPES[k]) for k in SCORE_KEYS},
    }
