"""Run an exported artefact and compare it with the NumPy reference (:class:`cascor.inference.Model`,
float64): the exporter's own check, and the tools the tests and the latency benchmark share
(onnxruntime sessions, compiling the C source into a library one can call)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..errors import ExportError
from ..inference import Model


def probe_rows(model: Model, n: int = 1000, seed: int = 0) -> np.ndarray:
    """Rows whose transformed inputs span [-3, 3] per feature (the scaled range networks are
    trained on), in float64: a float32 artefact gets them rounded, so a network whose outputs
    move when its inputs are rounded to float fails the check as it would fail its users."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-3.0, 3.0, size=(n, model.n_inputs))
    a = np.where(model.input_scale != 0, model.input_scale, 1.0)
    return (z - model.input_offset) / a


def onnx_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("running an ONNX model needs onnxruntime: pip install 'cascor[export]'") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def onnx_outputs(session, X) -> dict:
    """Every graph output by name, for rows ``X`` (cast to the graph's input type)."""
    inp = session.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {inp.name: np.asarray(X, dtype=dtype)})))


def compiler() -> str | None:
    """The system C compiler (``$CC``, else cc or gcc), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CModel:
    """The C export compiled into a shared library; ``predict(X)`` calls the generated function
    once per row (ctypes), returning (out [n, N_OUTPUTS], returned ints [n]). ``io`` is the
    function's argument type (``double`` for a float64 export)."""

    def __init__(self, source: str, function: str = "predict", n_outputs: int = 1, double: bool = False,
                 workdir: str | None = None, io: str = "float"):
        cc = compiler()
        if cc is None:
            raise ExportError("no C compiler found (set CC, or install gcc)")
        self._dir = workdir or tempfile.mkdtemp(prefix="cascor-c-")
        # a fresh name per library: dlopen returns the library already loaded from a path
        fd, lib = tempfile.mkstemp(suffix=".so", prefix="model-", dir=self._dir)
        os.close(fd)
        flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-shared", "-fPIC"]
        if double:
            flags.append("-DCASCOR_DOUBLE")
        proc = subprocess.run([cc, *flags, source, "-o", lib, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ExportError(f"the C export does not compile: {proc.stderr.strip()[:2000]}")
        self.lib = ctypes.CDLL(lib)
        self.fn = getattr(self.lib, function)
        self._ctype, self._dtype = (ctypes.c_double, np.float64) if io == "double" else (ctypes.c_float, np.float32)
        self.fn.argtypes = [ctypes.POINTER(self._ctype), ctypes.POINTER(self._ctype)]
        self.fn.restype = ctypes.c_int
        self.n_outputs = n_outputs

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = np.ascontiguousarray(X, dtype=self._dtype)
        out = np.zeros((len(X), self.n_outputs), dtype=self._dtype)
        ret = np.zeros(len(X), dtype=np.int64)
        fp = ctypes.POINTER(self._ctype)
        for i in range(len(X)):
            ret[i] = self.fn(X[i].ctypes.data_as(fp), out[i].ctypes.data_as(fp))
        return out, ret


def reference(model: Model, X) -> np.ndarray:
    """What every export's main output should equal: probabilities, or predictions [n, k]."""
    X = np.asarray(X, dtype=np.float64)
    if model.task == "classification":
        return model.predict_proba(X)
    return model.predict(X).reshape(len(X), -1)


def check_onnx(model: Model, path: str, X) -> dict:
    session = onnx_session(path)
    got = onnx_outputs(session, X)
    main = "probabilities" if model.task == "classification" else "prediction"
    want = reference(model, X)
    diff = float(np.max(np.abs(got[main].astype(np.float64) - want))) if len(X) else 0.0
    out = {"checked_rows": len(X), "max_abs_diff": diff, "max_scaled_diff": scaled_diff(model, got[main], want),
           "checked_with": "onnxruntime"}
    if model.task == "classification":
        out["label_agreement"] = float(np.mean(got["label"].astype(model.classes.dtype) == model.predict(X)))
    return out


def scaled_diff(model: Model, got, want) -> float:
    """The largest difference in the network's own units: probabilities as they are, regression
    predictions divided by the target scale (so one tolerance fits every target's units)."""
    if not len(want):
        return 0.0
    d = np.abs(np.asarray(got, dtype=np.float64) - want)
    return float(np.max(d if model.task == "classification" else d / model.target_scale))


def check_c(model: Model, source: str, X, function: str, io: str = "float") -> dict:
    n = len(model.classes) if model.task == "classification" else model.n_outputs
    with tempfile.TemporaryDirectory(prefix="cascor-c-") as tmp:
        cm = CModel(source, function, n, workdir=tmp, io=io)
        out, ret = cm.predict(X)
    want = reference(model, X)
    diff = float(np.max(np.abs(out.astype(np.float64) - want))) if len(X) else 0.0
    result = {"checked_rows": len(X), "max_abs_diff": diff, "max_scaled_diff": scaled_diff(model, out, want),
              "checked_with": os.path.basename(compiler() or "cc")}
    if model.task == "classification":
        result["label_agreement"] = float(np.mean(model.classes[ret] == model.predict(X)))
    return result
