"""Predict with an exported cascade using NumPy alone: no torch, no h5py, no other cascor module.

``cascor export SNAPSHOT --format numpy --out model.npz`` (or ``cascor.export.export``) writes a
``.npz`` of plain arrays; this module loads it and predicts::

    from cascor.inference import load
    model = load("model.npz")
    model.predict(X)         # class labels, or regression values in the target's own units
    model.predict_proba(X)   # classifiers: one column per class

The file is self-contained and so is this module: it imports only NumPy and the standard
library, so it can also be copied next to the ``.npz`` and used where cascor is not installed.
Everything is evaluated in float64, as the estimators predict (outputs equal ``predict_proba``
to ~1e-15). A file is read with ``allow_pickle=False`` and checked (format, shapes, activation
names against the closed list below) before anything is computed: a hostile ``.npz`` can name
no code and cannot make this module import anything.
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np

FORMAT = "cascor-inference/1"

# The registry's activations as NumPy functions of the net input (cascor.kernels has the torch
# kernels; tests check both give the same values on every name).
ACTIVATIONS = {
    "symmetric_sigmoid": lambda s: 0.5 * np.tanh(0.5 * s),  # sigmoid(s) - 0.5, without overflow
    "asymmetric_sigmoid": lambda s: 0.5 + 0.5 * np.tanh(0.5 * s),
    "tanh": np.tanh,
    "gaussian": lambda s: np.exp(-0.5 * s * s),
    "gaussian_symmetric": lambda s: 2.0 * np.exp(-s * s) - 1.0,
    "linear": lambda s: s,
    "elliot": lambda s: 0.5 * s / (1.0 + np.abs(s)) + 0.5,
    "elliot_symmetric": lambda s: s / (1.0 + np.abs(s)),
    "sin": lambda s: 0.5 * np.sin(s) + 0.5,
    "sin_symmetric": np.sin,
    "cos": lambda s: 0.5 * np.cos(s) + 0.5,
    "cos_symmetric": np.cos,
    "softmax": lambda s: _softmax(s),
}
# Output ranges (cascor.activations.ACTIVATION_SPECS low/high; a test checks they agree): a
# classifier without cross-entropy outputs maps its outputs to probabilities through them.
OUTPUT_RANGES = {"symmetric_sigmoid": (-0.5, 0.5), "asymmetric_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0),
                 "linear": (-0.5, 0.5), "softmax": (0.0, 1.0)}
PROBABILITIES = ("native", "normalised")  # the network's own (cross-entropy outputs), or mapped


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ModelFileError(ValueError):
    """An exported model file is unreadable, or not one this module wrote."""


class Model:
    """A trained cascade as plain arrays: an affine input transform, the frozen hidden units, the
    output layer, and what its outputs mean (class labels, or a target scaling).

    Hidden unit ``k`` reads the bias, the ``n_inputs`` (transformed) inputs and units ``0..k-1``:
    its weights are ``hidden_weights[k]`` (length ``1 + n_inputs + k``; bias first)."""

    def __init__(self, *, input_scale, input_offset, hidden_weights, hidden_activations, hidden_steepness,
                 output_weights, output_activation, task, classes=None, probabilities="native",
                 target_mean=None, target_scale=None, feature_names=None):
        self.input_scale = np.asarray(input_scale, dtype=np.float64)
        self.input_offset = np.asarray(input_offset, dtype=np.float64)
        self.hidden_weights = [np.asarray(w, dtype=np.float64) for w in hidden_weights]
        self.hidden_activations = [str(a) for a in hidden_activations]
        self.hidden_steepness = [float(s) for s in hidden_steepness]
        self.output_weights = np.asarray(output_weights, dtype=np.float64)
        self.output_activation = str(output_activation)
        self.task = str(task)
        self.classes = None if classes is None else np.asarray(classes)
        self.probabilities = str(probabilities)
        n_out = self.output_weights.shape[0] if self.output_weights.ndim == 2 else 0
        self.target_mean = np.zeros(n_out) if target_mean is None else np.asarray(target_mean, dtype=np.float64)
        self.target_scale = np.ones(n_out) if target_scale is None else np.asarray(target_scale, dtype=np.float64)
        self.feature_names = [str(f) for f in (feature_names or [])]
        self._check()

    # -- what it is --------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return len(self.input_scale)

    @property
    def n_hidden(self) -> int:
        return len(self.hidden_weights)

    @property
    def n_outputs(self) -> int:
        """Output units (one for two classes)."""
        return self.output_weights.shape[0]

    def _check(self) -> None:
        def bad(what, expected, found):
            raise ModelFileError(f"{what}: expected {expected}, found {found}")

        if self.input_scale.ndim != 1 or self.input_offset.shape != self.input_scale.shape:
            bad("input_offset", f"shape {self.input_scale.shape}", self.input_offset.shape)
        n_in = self.n_inputs
        if not (len(self.hidden_activations) == len(self.hidden_steepness) == self.n_hidden):
            bad("hidden units", f"{self.n_hidden} activations and steepnesses",
                f"{len(self.hidden_activations)} and {len(self.hidden_steepness)}")
        for k, (w, act) in enumerate(zip(self.hidden_weights, self.hidden_activations)):
            if w.shape != (1 + n_in + k,):
                bad(f"hidden unit {k} weights", f"shape {(1 + n_in + k,)}", w.shape)
            if act not in ACTIVATIONS or act == "softmax":
                bad(f"hidden unit {k} activation", f"one of {', '.join(a for a in ACTIVATIONS if a != 'softmax')}",
                    repr(act))
        if self.output_weights.ndim != 2 or self.output_weights.shape[1] != 1 + n_in + self.n_hidden:
            bad("output_weights", f"shape (outputs, {1 + n_in + self.n_hidden})", self.output_weights.shape)
        if self.output_activation not in OUTPUT_RANGES:
            bad("output_activation", f"one of {', '.join(OUTPUT_RANGES)}", repr(self.output_activation))
        if self.task not in ("classification", "regression"):
            bad("task", "'classification' or 'regression'", repr(self.task))
        if self.task == "classification":
            if self.classes is None or self.classes.ndim != 1 or len(self.classes) < 2:
                bad("classes", "a list of at least two labels", None if self.classes is None else self.classes.shape)
            expected = 1 if len(self.classes) == 2 else len(self.classes)
            if self.n_outputs != expected:
                bad("output units", f"{expected} for {len(self.classes)} classes", self.n_outputs)
            if self.probabilities not in PROBABILITIES:
                bad("probabilities", " or ".join(PROBABILITIES), repr(self.probabilities))
        for name in ("target_mean", "target_scale"):
            if getattr(self, name).shape != (self.n_outputs,):
                bad(name, f"shape ({self.n_outputs},)", getattr(self, name).shape)
        arrays = [self.input_scale, self.input_offset, self.output_weights, self.target_mean, self.target_scale,
                  np.asarray(self.hidden_steepness), *self.hidden_weights]
        if not all(np.all(np.isfinite(a)) for a in arrays):
            raise ModelFileError("the model holds a non-finite weight or scaling value")

    # -- prediction ----------------------------------------------------------------------------
    def _inputs(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X: expected shape (n, {self.n_inputs}), found {X.shape}")
        if not np.all(np.isfinite(X)):
            bad = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"X: non-finite value at row {bad[0]}, column {bad[1]}")
        return X

    def outputs(self, X) -> np.ndarray:
        """The output units' activations [n, n_outputs] (the network's own range)."""
        X = self._inputs(X)
        n, n_in = X.shape
        values = np.empty((n, 1 + n_in + self.n_hidden))
        values[:, 0] = 1.0
        values[:, 1 : 1 + n_in] = X * self.input_scale + self.input_offset
        for k, (w, act, steep) in enumerate(zip(self.hidden_weights, self.hidden_activations, self.hidden_steepness)):
            col = 1 + n_in + k
            net = values[:, :col] @ w
            if steep != 1.0:
                net = net * steep
            values[:, col] = ACTIVATIONS[act](net)
        return ACTIVATIONS[self.output_activation](values @ self.output_weights.T)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities [n, n_classes] (as ``CascorClassifier.predict_proba``)."""
        if self.task != "classification":
            raise ValueError("predict_proba: this model is a regressor")
        return _probabilities(self.outputs(X), self)

    def predict(self, X) -> np.ndarray:
        """Class labels (as ``CascorClassifier.predict``), or regression values [n] / [n, outputs]."""
        out = self.outputs(X)
        if self.task == "classification":
            low, high = OUTPUT_RANGES[self.output_activation]
            if len(self.classes) == 2:
                return self.classes[(out[:, 0] > (low + high) / 2).astype(int)]
            return self.classes[np.argmax(out, axis=1)]
        pred = out * self.target_scale + self.target_mean
        return pred[:, 0] if pred.shape[1] == 1 else pred

    # -- file --------------------------------------------------------------------------------
    def to_arrays(self) -> dict:
        arrays = {
            "format": np.array(FORMAT),
            "input_scale": self.input_scale,
            "input_offset": self.input_offset,
            "hidden_weights": np.concatenate([np.zeros(0), *self.hidden_weights]),
            "hidden_activations": np.array(self.hidden_activations, dtype=str).reshape(-1),
            "hidden_steepness": np.array(self.hidden_steepness, dtype=np.float64).reshape(-1),
            "output_weights": self.output_weights,
            "output_activation": np.array(self.output_activation),
            "task": np.array(self.task),
            "probabilities": np.array(self.probabilities),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "feature_names": np.array(self.feature_names, dtype=str).reshape(-1),
        }
        if self.classes is not None:
            arrays["classes"] = self.classes
        return arrays

    def save(self, path: str) -> None:
        """Write the ``.npz`` (uncompressed: a model loads with no inflating)."""
        with open(path, "wb") as f:
            np.savez(f, **self.to_arrays())


def _probabilities(out: np.ndarray, model: Model) -> np.ndarray:
    if model.probabilities == "native":
        return np.hstack([1.0 - out, out]) if len(model.classes) == 2 else out
    low, high = OUTPUT_RANGES[model.output_activation]
    p = np.clip((out - low) / (high - low), 0.0, 1.0)
    if len(model.classes) == 2:
        return np.hstack([1.0 - p, p])
    p = p + 1e-12
    return p / p.sum(axis=1, keepdims=True)


_KEYS = ("format", "input_scale", "input_offset", "hidden_weights", "hidden_activations", "hidden_steepness",
         "output_weights", "output_activation", "task", "probabilities", "target_mean", "target_scale",
         "feature_names")


def load(path) -> Model:
    """The model in an exported ``.npz``; ModelFileError names what is wrong with a file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelFileError(f"{path}: not a readable .npz file ({exc})") from None
    return from_arrays(arrays, where=str(path))


def from_arrays(arrays: dict, where: str = "model") -> Model:
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ModelFileError(f"{where}: not a cascor model file (missing {', '.join(missing)})")
    fmt = str(arrays["format"])
    if fmt != FORMAT:
        raise ModelFileError(f"{where}: format {fmt!r}; this module reads {FORMAT!r}")
    for k in ("hidden_activations", "output_activation", "task", "probabilities", "feature_names"):
        if arrays[k].dtype.kind != "U":
            raise ModelFileError(f"{where}: {k}: expected text, found dtype {arrays[k].dtype}")
    for k in ("input_scale", "input_offset", "hidden_weights", "hidden_steepness", "output_weights",
              "target_mean", "target_scale"):
        if arrays[k].dtype.kind != "f":
            raise ModelFileError(f"{where}: {k}: expected floating-point numbers, found dtype {arrays[k].dtype}")
    n_in = arrays["input_scale"].reshape(-1).shape[0]
    acts = [str(a) for a in arrays["hidden_activations"].reshape(-1)]
    flat = arrays["hidden_weights"].reshape(-1)
    sizes = [1 + n_in + k for k in range(len(acts))]
    if flat.shape[0] != sum(sizes):
        raise ModelFileError(f"{where}: hidden_weights: expected {sum(sizes)} values for {len(acts)} units "
                             f"on {n_in} inputs, found {flat.shape[0]}")
    bounds = np.cumsum([0, *sizes])
    classes = arrays.get("classes")
    if classes is not None and classes.dtype.kind not in "iubfU":
        raise ModelFileError(f"{where}: classes: expected numbers or text, found dtype {classes.dtype}")
    try:
        return Model(
            input_scale=arrays["input_scale"].reshape(-1), input_offset=arrays["input_offset"].reshape(-1),
            hidden_weights=[flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])], hidden_activations=acts,
            hidden_steepness=arrays["hidden_steepness"].reshape(-1), output_weights=arrays["output_weights"],
            output_activation=str(arrays["output_activation"]), task=str(arrays["task"]),
            classes=classes, probabilities=str(arrays["probabilities"]),
            target_mean=arrays["target_mean"], target_scale=arrays["target_scale"],
            feature_names=list(arrays["feature_names"].reshape(-1)))
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
