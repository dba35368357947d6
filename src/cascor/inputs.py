"""The map from a data file's columns to the network's inputs (format 1.5).

Cascade-Correlation is sensitive to input scale: the candidates' weights start in a fixed range
and quickprop's steps are the same for every weight, so a column with standard deviation 300
saturates every unit it feeds and one with 0.05 barely moves them (measured with ``cascor train``
on raw wine: .50-.63 test accuracy, .98 standardised; docs/results.md). A data scientist puts a
``StandardScaler`` in front of an estimator; a CLI or service user has no pipeline to put it in.
So a run may own its standardisation: the mean and scale of the rows it was given, kept in the
training state (and the snapshot), applied wherever data enters (resume, evaluate, plot, the
service) and folded into every export, so that all of them read the file's own columns.

The map is computed in float64 from the data as loaded and cast to float32 once, always by
:meth:`InputScaling.apply`, so a resume rebuilds exactly the float32 inputs (and data digest)
the run started with.
"""

from __future__ import annotations

import numpy as np

from .errors import StateError


class InputScaling:
    """``(x - mean) / scale`` per column (``scale`` > 0; a constant column keeps scale 1)."""

    def __init__(self, mean, scale):
        self.mean = np.array(mean, dtype=np.float64).reshape(-1)
        self.scale = np.array(scale, dtype=np.float64).reshape(-1)

    @classmethod
    def fit(cls, X) -> "InputScaling":
        """The standardisation of ``X``'s columns, as scikit-learn's ``StandardScaler`` computes it
        (population standard deviation; near-constant columns keep scale 1)."""
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(np.asarray(X, dtype=np.float64))
        return cls(scaler.mean_, scaler.scale_)

    @property
    def n_inputs(self) -> int:
        return len(self.mean)

    def apply(self, X) -> np.ndarray:
        """The network's inputs for rows ``X`` of the file's columns (float32)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"expected rows of {self.n_inputs} columns; got an array of shape {X.shape}")
        return ((X - self.mean) / self.scale).astype(np.float32)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) with apply(x) = x * a + b up to rounding: the form an exporter folds in."""
        a = 1.0 / self.scale
        return a, -self.mean * a

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "scale": self.scale.copy()}

    @classmethod
    def from_state_dict(cls, state: dict, n_inputs: int) -> "InputScaling":
        """Checked: one finite mean and one finite, positive scale per input (a file may come
        from anyone, and a zero or NaN scale would turn every prediction into NaN)."""
        obj = cls(state["mean"], state["scale"])
        if obj.mean.shape != (n_inputs,) or obj.scale.shape != (n_inputs,):
            raise StateError(f"the input scaling has {obj.mean.shape[0]} means and {obj.scale.shape[0]} scales "
                             f"for a network of {n_inputs} inputs")
        if not np.all(np.isfinite(obj.mean)):
            raise StateError("the input scaling holds a non-finite mean")
        if not (np.all(np.isfinite(obj.scale)) and np.all(obj.scale > 0)):
            bad = float(obj.scale[~(np.isfinite(obj.scale) & (obj.scale > 0))][0])
            raise StateError(f"the input scaling's scales must be finite and positive; found {bad!r}")
        return obj

    def __eq__(self, other) -> bool:
        return (isinstance(other, InputScaling) and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.scale, other.scale))

    def __repr__(self) -> str:
        return f"InputScaling(n_inputs={self.n_inputs})"

