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
# ONNX defaults to float64 (its outputs then equal predict_proba / predict to ~1e-15); C to float,
# what a microcontroller computes in. NumPy is always float64.
DEFAULT_DTYPE = {"onnx": "float64", "numpy": "float64", "c": "float32"}
# The check refuses an artefact whose outputs differ from the model's by more than this, in the
# network's own units (probabilities; regression outputs over the target scale). Well-conditioned
# networks in float32 differ by ~1e-6 to ~2e-5 (measured: the estimators on moons, iris, diabetes;
# fahlman-spirals two-spirals); a network with weights in the thousands (seen with cascade2 and
# periodic units) differs by up to 0.75 in float32 and must be exported in float64.
CHECK_TOLERANCE = 1e-4

__all__ = ["FORMATS", "export", "model_from"]


def export(source, path: str, format: str = "onnx", *, dtype: str | None = None, prefix: str = "",
           check: bool = True) -> dict:
    """Export ``source`` (a snapshot path, a ``TrainState``, a fitted estimator or a ``Pipeline``
    of scalers ending in one) to ``path`` and return a report: what was written and, with
    ``check``, how far the artefact's outputs are from the float64 reference on probe rows.

    ``dtype`` is the arithmetic: for ONNX ``float64`` (the default; equal to ``predict_proba`` to
    ~1e-15) or ``float32`` (what accelerators run); for C ``float32`` (the default) or ``float64``
    (the source then computes in double unless compiled with ``-DCASCOR_FLOAT``). For ``c``,
    ``path`` names the source (its ``.h`` is written beside it) and ``prefix`` the function
    (``prefix + "predict"``).

    The check runs the artefact (onnxruntime, the system C compiler, the NumPy loader) on 1,000
    probe rows and refuses it, writing nothing, when it differs from the model by more than
    :data:`CHECK_TOLERANCE` (a float32 export of a network that needs double precision)."""
    if format not in FORMATS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    dtype = dtype or DEFAULT_DTYPE[format]
    if dtype not in ("float32", "float64") or (format == "numpy" and dtype != "float64"):
        expected = "float64" if format == "numpy" else "float32 or float64"
        raise ExportError(f"dtype {dtype!r} for {format}: expected {expected}")
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


def _gate(model: Model, result: dict, format: str, dtype: str) -> dict:
    """Refuse an artefact that does not compute the model (called before anything is written)."""
    diff = result.get("max_scaled_diff", 0.0)
    if diff <= CHECK_TOLERANCE:
        return result
    import numpy as np

    largest = max([float(np.max(np.abs(w))) for w in model.hidden_weights] + [0.0])
    if dtype == "float32":
        raise ExportError(f"the {format} export in float32 differs from the model by {diff:.2g} on "
                          f"{result['checked_rows']} probe rows (largest hidden-unit weight {largest:.3g}): this "
                          "network needs double precision; export with --dtype float64 (dtype='float64'), "
                          "or --no-check to write it anyway")
    raise ExportError(f"the {format} export differs from the model by {diff:.2g} on {result['checked_rows']} probe "
                      f"rows (largest hidden-unit weight {largest:.3g}); use --no-check to write it anyway")


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
            out["check"] = _gate(model, check_onnx(model, probe, _probe(model)), "onnx", dtype)
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
        out["check"] = _gate(model, {"checked_rows": len(X), "max_abs_diff": diff, "max_scaled_diff": diff,
                                     "checked_with": "cascor.inference.load"}, "numpy", dtype)
    _write(path, data)
    return out


def _c(model: Model, path: str, *, dtype: str, prefix: str, check: bool) -> dict:
    from .to_c import c_paths, header_name, to_c

    h_path, c_path = c_paths(path)
    header, source = to_c(model, header_name(h_path), prefix=prefix, double=dtype == "float64")
    out = {"paths": [c_path, h_path], "function": f"{prefix}predict", "dtype": dtype}
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
                result = check_c(model, src, _probe(model), f"{prefix}predict", io="double" if dtype == "float64" else "float")
                out["check"] = _gate(model, result, "c", dtype)
    _write(h_path, header.encode("utf-8"))
    _write(c_path, source.encode("utf-8"))
    return out
