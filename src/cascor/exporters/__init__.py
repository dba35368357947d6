"""Exports of a trained cascade to where it will run: an ONNX graph, a NumPy-only ``.npz`` (read by
:mod:`cascor.inference`), or a C99 source/header pair.

``cascor.export(source, path, format=...)`` and ``cascor export`` build the torch-free
:class:`cascor.inference.Model` of the source (:mod:`.model`), generate the format from it, check
the artefact by running it (onnxruntime; the system C compiler; the NumPy loader) against the
model on probe rows, and only then write it, atomically: a failed export leaves nothing behind.
"""

from __future__ import annotations

import io
import os

from ..errors import ExportError
from ..inference import Model, load as load_npz
from .model import model_from

FORMATS = ("onnx", "numpy", "c")
SUFFIX = {"onnx": ".onnx", "numpy": ".npz"}

__all__ = ["FORMATS", "export", "model_from"]


def export(source, path: str, format: str = "onnx", *, dtype: str = "float32", prefix: str = "",
           check: bool = True) -> dict:
    """Export ``source`` (a snapshot path, a ``TrainState``, a fitted estimator or a ``Pipeline``
    of scalers ending in one) to ``path`` and return a report: what was written and, with
    ``check``, how far the artefact's outputs are from the float64 reference on probe rows.

    ``dtype`` is the ONNX graph's arithmetic (``float32``, what runtimes accelerate, or
    ``float64``, equal to ``predict_proba`` to ~1e-15). For ``c``, ``path`` names the source (its
    ``.h`` is written beside it) and ``prefix`` the function (``prefix + "predict"``); the C export
    computes in float, or double with ``-DCASCOR_DOUBLE``."""
    if format not in FORMATS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    if dtype not in ("float32", "float64"):
        raise ExportError(f"dtype {dtype!r}: expected float32 or float64")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"{path}: the folder {folder} does not exist")
    model = model_from(source)
    report = {"format": format, "task": model.task, "inputs": model.n_inputs, "hidden_units": model.n_hidden,
              "outputs": model.n_outputs}
    if model.task == "classification":
        report["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes]
    writer = {"onnx": _onnx, "numpy": _numpy, "c": _c}[format]
    report.update(writer(model, path, dtype=dtype, prefix=prefix, check=check))
    return report


def _write(path: str, data: bytes) -> None:
    from ..snapshot.writer import atomic_write

    atomic_write(path, data)


def _probe(model: Model):
    from .check import probe_rows

    return probe_rows(model)


def _onnx(model: Model, path: str, *, dtype: str, prefix: str, check: bool) -> dict:
    from .to_onnx import OPSET, to_onnx

    data = to_onnx(model, dtype=dtype).SerializeToString()
    out = {"paths": [path], "dtype": dtype, "opset": OPSET}
    if check:
        import tempfile

        from .check import check_onnx

        with tempfile.TemporaryDirectory(prefix="cascor-onnx-") as tmp:
            probe = os.path.join(tmp, "model.onnx")
            with open(probe, "wb") as f:
                f.write(data)
            out["check"] = check_onnx(model, probe, _probe(model))
    _write(path, data)
    return out


def _numpy(model: Model, path: str, *, dtype: str, prefix: str, check: bool) -> dict:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **model.to_arrays())
    data = buf.getvalue()
    out = {"paths": [path]}
    if check:
        from .check import reference

        X = _probe(model)
        again = load_npz(io.BytesIO(data))
        diff = float(np.max(np.abs(reference(again, X) - reference(model, X))))
        out["check"] = {"checked_rows": len(X), "max_abs_diff": diff, "checked_with": "cascor.inference.load"}
    _write(path, data)
    return out


def _c(model: Model, path: str, *, dtype: str, prefix: str, check: bool) -> dict:
    from .to_c import c_paths, header_name, to_c

    h_path, c_path = c_paths(path)
    header, source = to_c(model, header_name(h_path), prefix=prefix)
    out = {"paths": [c_path, h_path], "function": f"{prefix}predict"}
    if check:
        import tempfile

        from .check import check_c, compiler

        if compiler() is None:
            out["check"] = {"skipped": "no C compiler found (set CC, or install gcc)"}
        else:
            with tempfile.TemporaryDirectory(prefix="cascor-c-") as tmp:
                src = os.path.join(tmp, os.path.basename(c_path))
                for p, text in ((src, source), (os.path.join(tmp, os.path.basename(h_path)), header)):
                    with open(p, "w", encoding="utf-8") as f:
                        f.write(text)
                out["check"] = check_c(model, src, _probe(model), f"{prefix}predict")
    _write(h_path, header.encode("utf-8"))
    _write(c_path, source.encode("utf-8"))
    return out
