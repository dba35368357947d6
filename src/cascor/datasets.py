"""Benchmark problems and user data, as float arrays plus what the targets mean.

A :class:`Dataset` keeps raw targets (class labels or real values); :func:`encode_targets`
turns them into the output units' range when training starts, so the same dataset serves
symmetric (-0.5..0.5), asymmetric (0..1) and tanh outputs.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError
from .files import NotRegularFile, open_regular


@dataclass
class Dataset:
    name: str
    X: np.ndarray  # [N, I] float64
    y: np.ndarray  # [N] class labels (classification) or [N] / [N, O] real values (regression)
    task: str = "classification"  # or "regression"
    classes: np.ndarray | None = None
    feature_names: list[str] = field(default_factory=list)
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return 1 if len(self.classes) == 2 else len(self.classes)
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def encode_targets(y, classes, low: float, high: float) -> np.ndarray:
    """Class labels -> output targets: one output (low/high) for two classes, else one-hot."""
    y = np.asarray(y)
    classes = np.asarray(classes)
    idx = np.searchsorted(classes, y)
    if len(classes) == 2:
        return np.where(idx == 1, high, low).astype(np.float32)[:, None]
    T = np.full((len(y), len(classes)), low, dtype=np.float32)
    T[np.arange(len(y)), idx] = high
    return T


def decode_outputs(outputs, classes, low: float, high: float) -> np.ndarray:
    outputs = np.asarray(outputs)
    classes = np.asarray(classes)
    if len(classes) == 2:
        return classes[(outputs[:, 0] > (low + high) / 2).astype(int)]
    return classes[np.argmax(outputs, axis=1)]


# -- classic benchmarks ----------------------------------------------------------------------
def _spiral_points(i: np.ndarray):
    angle = i * math.pi / 16.0
    radius = 6.5 * (104.0 - i) / 104.0
    return radius * np.sin(angle), radius * np.cos(angle)


def two_spirals(test: bool = False) -> Dataset:
    """The CMU two-spirals benchmark: 194 points (97 per spiral), i = 0..96.

    Point i is (r sin a, r cos a) with a = i*pi/16 and r = 6.5 (104 - i) / 104 in class 1,
    and its reflection (-x, -y) in class 0. (cascor1.c generates 192 points and FANN ships
    193 rescaled ones; this is the 194-point definition of the CMU benchmark.) With
    ``test=True`` a test set interleaves the points at i + 0.5.
    """

    def make(i):
        x, y = _spiral_points(i)
        X = np.empty((2 * len(i), 2))
        X[0::2, 0], X[0::2, 1] = x, y
        X[1::2, 0], X[1::2, 1] = -x, -y
        labels = np.tile([1, 0], len(i))
        return X, labels

    X, y = make(np.arange(97, dtype=np.float64))
    ds = Dataset("two-spirals", X, y, classes=np.array([0, 1]), feature_names=["x", "y"])
    if test:
        ds.X_test, ds.y_test = make(np.arange(96, dtype=np.float64) + 0.5)
    return ds


def n_spirals(
    n_spirals: int = 2,
    n_points: int = 1000,
    rotations: float = 1.0,
    noise: float = 0.1,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Dataset:
    """``n_spirals`` interleaved arms of ``n_points`` points each, ``rotations`` turns, Gaussian noise.

    Split into train / validation / test by ``split``; the test part is returned as
    X_test / y_test and the validation part is folded into it (documented, simple).
    """
    if n_spirals < 2 or n_points < 2:
        raise DataError(f"n_spirals needs at least 2 spirals of 2 points; got {n_spirals} x {n_points}")
    rng = np.random.Generator(np.random.PCG64(seed))
    t = np.linspace(0.0, 1.0, n_points)
    Xs, ys = [], []
    for k in range(n_spirals):
        angle = 2 * math.pi * rotations * t + 2 * math.pi * k / n_spirals
        r = t
        pts = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        pts += rng.normal(scale=noise * 0.1, size=pts.shape)
        Xs.append(pts)
        ys.append(np.full(n_points, k))
    X = np.concatenate(Xs)
    y = np.concatenate(ys)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    n_train = int(round(split[0] * len(y)))
    ds = Dataset(f"{n_spirals}-spirals", X[:n_train], y[:n_train], classes=np.arange(n_spirals),
                 feature_names=["x", "y"])
    ds.X_test, ds.y_test = X[n_train:], y[n_train:]
    return ds


def parity(n_bits: int) -> Dataset:
    """All 2^N binary patterns (inputs in {-0.5, 0.5} as in the paper's runs), target = parity."""
    if not 1 <= n_bits <= 20:
        raise DataError(f"parity needs 1..20 bits; got {n_bits}")
    codes = np.arange(2**n_bits)
    bits = (codes[:, None] >> np.arange(n_bits)[::-1]) & 1
    X = bits.astype(np.float64) - 0.5
    y = bits.sum(axis=1) % 2
    return Dataset(f"parity{n_bits}", X, y, classes=np.array([0, 1]))


def xor() -> Dataset:
    ds = parity(2)
    ds.name = "xor"
    return ds


_SKLEARN = {
    "iris": "load_iris",
    "wine": "load_wine",
    "breast-cancer": "load_breast_cancer",
    "digits": "load_digits",
    "diabetes": "load_diabetes",
}


def _sklearn(name: str) -> Dataset:
    from sklearn import datasets as skd

    bunch = getattr(skd, _SKLEARN[name])()
    X = np.asarray(bunch.data, dtype=np.float64)
    # Standardise: these features span very different scales.
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    y = np.asarray(bunch.target)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
        return Dataset(name, X, y.astype(np.float64), task="regression",
                       feature_names=list(bunch.feature_names))
    return Dataset(name, X, y, classes=np.unique(y), feature_names=list(getattr(bunch, "feature_names", [])))


DATASET_NAMES = ("two-spirals", "xor", "parity2", "parity3", "parity4", "parity5", "parity6",
                 "parity7", "parity8", "spirals", *_SKLEARN)


def load_dataset(name: str) -> Dataset:
    """A built-in dataset by name: two-spirals, xor, parityN, spirals (N-spirals defaults), or a scikit-learn one."""
    if name == "two-spirals":
        return two_spirals(test=True)
    if name == "xor":
        return xor()
    if name.startswith("parity") and name[6:].isdigit():
        return parity(int(name[6:]))
    if name == "spirals":
        return n_spirals()
    if name in _SKLEARN:
        return _sklearn(name)
    raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)} (or --data FILE)")


# -- user files ---------------------------------------------------------------------------
MAX_DATA_BYTES = 8 << 30


def _read_regular(path: str) -> bytes:
    """The bytes of a regular file, or a DataError: never a FIFO (it would block), a device
    (``/dev/zero`` never ends), a directory or a file over :data:`MAX_DATA_BYTES`."""
    try:
        fd, size = open_regular(path)
    except FileNotFoundError:
        raise DataError(f"data file {path!r} does not exist") from None
    except NotRegularFile:
        raise DataError(f"data file {path!r} is not a regular file") from None
    except OSError as exc:
        raise DataError(f"cannot read data file {path!r}: {exc.strerror or exc}") from None
    try:
        if size > MAX_DATA_BYTES:
            raise DataError(f"data file {path!r} is {size} bytes, over the {MAX_DATA_BYTES}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise DataError(f"cannot read data file {path!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load_file(path: str, target: str | int | None = None, task: str = "auto", header: str = "auto",
              quote: bool = True) -> Dataset:
    """Load a CSV or NPZ file. CSV: the target is the last column unless ``target`` names or
    numbers one; NPZ: arrays ``X`` and ``y``. ``task`` 'auto' treats integer-valued or text
    targets with few distinct values as classes.

    ``quote=False`` keeps the file's content out of every error message (a path recorded in a
    snapshot is a stranger's hint: its errors must not show what the file holds).
    """
    data = _read_regular(path)
    if data[:4] == b"PK\x03\x04" or path.endswith(".npz"):
        return _load_npz(path, data, task)
    if data[:2] == b"\x1f\x8b":
        raise DataError(f"{path}: the file is gzip-compressed; decompress it first (gunzip)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file (byte {exc.start} is not UTF-8; binary or compressed?)") from None
    if "\0" in text:
        raise DataError(f"{path}: not a text CSV file (it holds NUL bytes; binary?)")
    return _load_csv(path, text, target, task, header, quote)


def _load_npz(path: str, data: bytes, task: str) -> Dataset:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise DataError(f"{path}: an NPZ file needs arrays 'X' and 'y'; found {len(f.files)} other array(s)")
            X, y = np.asarray(f["X"]), np.asarray(f["y"])
    except DataError:
        raise
    except Exception as exc:  # zipfile's and NumPy's own errors (BadZipFile, ValueError, ...)
        raise DataError(f"{path}: cannot read NPZ file ({type(exc).__name__})") from None
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: 'X' must be numeric; found dtype {X.dtype}")
    if y.dtype.kind not in "biufU":
        raise DataError(f"{path}: 'y' must be numbers or text; found dtype {y.dtype}")
    return _finish(os.path.basename(path), X.astype(np.float64), y, task, [])


def _load_csv(path: str, text: str, target, task: str, header: str, quote: bool = True) -> Dataset:
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r and any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    first = rows[0]

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    def show(value) -> str:
        return repr(value) if quote else "(value not shown)"

    has_header = header == "yes" or (header == "auto" and not all(numeric(c) for c in first[:-1]))
    names = [c.strip() for c in first] if has_header else [f"col{i}" for i in range(len(first))]
    body = rows[1:] if has_header else rows
    if not body:
        raise DataError(f"{path}: the file has a header but no data rows")
    width = len(names)
    if width < 2:
        raise DataError(f"{path}: need at least one feature column and a target column; found {width} column(s)")
    for n, r in enumerate(body, start=2 if has_header else 1):
        if len(r) != width:
            raise DataError(f"{path}, line {n}: expected {width} columns, found {len(r)}")
    if target is None:
        t = width - 1
    elif isinstance(target, int) or (isinstance(target, str) and target.lstrip("-").isdigit()):
        t = int(target)
        if not -width <= t < width:
            raise DataError(f"{path}: --target {t} is out of range; the file has {width} columns "
                            f"(0..{width - 1}, or -1..-{width} from the end)")
        t %= width
    elif target in names:
        t = names.index(target)
    else:
        raise DataError(f"{path}: no target column {target!r}; "
                        + (f"columns are {names}" if quote else f"the file has {width} columns"))
    feats = [i for i in range(width) if i != t]
    X = np.empty((len(body), len(feats)))
    for n, r in enumerate(body):
        line = n + (2 if has_header else 1)
        if not r[t].strip():
            raise DataError(f"{path}, line {line}: the target cell is empty (remove the row or fill it in)")
        for j, i in enumerate(feats):
            try:
                X[n, j] = float(r[i])
            except ValueError:
                raise DataError(
                    f"{path}, line {line}, column {repr(names[i]) if quote else i + 1}: {show(r[i])} is not a number "
                    "(encode categorical features numerically first)"
                ) from None
    y_raw = [r[t].strip() for r in body]
    y = np.array([float(v) for v in y_raw]) if all(numeric(v) for v in y_raw) else np.array(y_raw)
    return _finish(os.path.basename(path), X, y, task, [names[i] for i in feats], quote)


def _finish(name: str, X: np.ndarray, y: np.ndarray, task: str, feature_names, quote: bool = True) -> Dataset:
    if X.ndim != 2:
        raise DataError(f"{name}: inputs must be 2-D; got shape {X.shape}")
    if len(X) != len(y):
        raise DataError(f"{name}: {len(X)} input rows but {len(y)} targets")
    if task == "auto":
        if y.dtype.kind in "USO" or y.dtype.kind in "biu":
            task = "classification"
        else:
            integral = np.all(np.isfinite(y)) and np.all(y == np.round(y))
            task = "classification" if integral and len(np.unique(y)) <= max(2, min(20, len(y) // 5)) else "regression"
    if task == "classification":
        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"{name}: the target has a single class"
                            + (f" ({classes[0]!r})" if quote else "") + "; need at least two")
        return Dataset(name, X, y, classes=classes, feature_names=feature_names)
    return Dataset(name, X, y.astype(np.float64), task="regression", feature_names=feature_names)
