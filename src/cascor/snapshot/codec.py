"""The state tree <-> the format's objects, in stages, so that a checkpoint costs the training loop little.

:func:`take` runs at the moment of a save: the state tree (``TrainState.state_dict``, cloned
or, for a save written at once, the live tensors) plus the process-global RNG states, as a
*raw tree*. :func:`finish` turns a raw tree into the snapshot's arrays and root attributes
(every JSON encoding, dtype conversion and layout decision). Synchronous saves run both here.
The background writer instead ships :func:`take_wire` (the same information read from the
live objects with no conversion) to its helper process, which rebuilds the raw tree with
:func:`raw_from_wire` and runs the same :func:`finish`; a test checks both write the same
datasets. Nothing here imports torch at module level (the helper never imports it).
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SnapshotError
from . import format as fmt
from .globals import capture_raw, encode_globals

if TYPE_CHECKING:
    from .reader import RawSnapshot

DEFAULT_BACKEND = {"name": "local", "workers": None, "scheduler": None}


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _as(t, dtype) -> np.ndarray:
    """The array in ``dtype``, copying only when the dtype differs (it may alias a live tensor:
    callers consume it before training moves on)."""
    return _np(t).astype(dtype, copy=False)


def encode_state(state_dict: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """TrainState.state_dict() -> (meta JSON, tensors) in format 1.0."""
    net, pool, hist = state_dict["network"], state_dict["pool"], state_dict["history"]
    units = net["units"]
    arrays = {
        "network/output_weights": _as(net["output_weights"], fmt.F4),
        "network/hidden_weights": np.concatenate([_np(u["weights"]) for u in units]).astype(fmt.F4)
        if units else np.zeros(0, fmt.F4),
        "network/hidden_steepness": np.array([u["steepness"] for u in units], dtype=fmt.F8),
        "optimizer/output_delta": _as(state_dict["output_slots"]["delta"], fmt.F4),
        "optimizer/output_prev_slope": _as(state_dict["output_slots"]["prev_slope"], fmt.F4),
        "residual/errors": _as(state_dict["errors"], fmt.F4),
        "residual/diffs": _as(state_dict["diffs"], fmt.F4),
    }
    for key, dtype in fmt.HISTORY_EPOCH.items():
        arrays[f"history/{key}"] = np.asarray(hist["epochs"][key]).astype(dtype, copy=False)
    for key, dtype in fmt.HISTORY_UNIT.items():
        arrays[f"history/unit_{key}"] = np.asarray(hist["units"][key]).astype(dtype, copy=False)
    for key, dtype in fmt.HISTORY_SCORE.items():
        arrays[f"history/score_{key}"] = np.asarray(hist["scores"][key]).astype(dtype, copy=False)
    val_meta = None
    val = state_dict.get("validation")
    if val is not None:
        val_meta = {k: val[k] for k in fmt.VALIDATION_META}
        val_meta["split"] = val["index"] is not None
        if val["index"] is not None:
            arrays["validation/index"] = _as(val["index"], fmt.I8)
        if val["best_weights"] is not None:
            arrays["validation/best_weights"] = _as(val["best_weights"], fmt.F4)
    scaling = state_dict.get("input_scaling")
    if scaling is not None:  # format 1.5
        arrays["inputs/mean"] = _as(scaling["mean"], fmt.F8)
        arrays["inputs/scale"] = _as(scaling["scale"], fmt.F8)
    pool_meta = None
    if pool is not None:
        pool_meta = {"activations": list(pool["activations"]), "best": int(pool["best"]),
                     "best_score": float(pool["best_score"])}
        for key in ("weights", "delta", "prev_slope", "prev_cor", "scores", "out_weights", "out_delta", "out_prev_slope"):
            if key in pool:
                arrays[f"pool/{key}"] = _as(pool[key], fmt.F4)
        arrays["pool/steepness"] = _as(pool["steepnesses"], fmt.F8)
    meta = {
        "status": state_dict["status"],
        "n_inputs": int(net["n_inputs"]),
        "n_outputs": int(net["n_outputs"]),
        "n_patterns": int(state_dict["n_patterns"]),
        "output_activation": net["output_activation"],
        "hidden_activations": [u["activation"] for u in units],
        "phase": dict(state_dict["phase"]),
        "counters": dict(state_dict["counters"]),
        "pool": pool_meta,
        "history_epochs": int(arrays["history/epoch"].size),
        "history_unit_activations": list(hist["units"]["activation"]),
        "history_scores": int(arrays["history/score_epoch"].size),
        "targets": state_dict["targets"],
        "data_digest": state_dict["data_digest"],
        "validation": val_meta,
        "input_scaling": scaling is not None,
    }
    return meta, arrays


def decode_state(raw: RawSnapshot) -> dict:
    """(meta, config, tensors) -> a state dict for TrainState.from_state_dict (torch tensors)."""
    import torch

    m, a = raw.meta, raw.arrays

    def t(name):
        return torch.from_numpy(np.array(a[name], copy=True))

    I = int(m["n_inputs"])
    units, offset = [], 0
    flat = a["network/hidden_weights"]
    for k, act in enumerate(m["hidden_activations"]):
        fan = 1 + I + k
        units.append({"weights": torch.from_numpy(flat[offset:offset + fan].copy()), "activation": act,
                      "steepness": float(a["network/hidden_steepness"][k])})
        offset += fan
    pool = None
    if m["pool"] is not None:
        pool = {"activations": list(m["pool"]["activations"]), "steepnesses": t("pool/steepness"),
                "best": m["pool"]["best"], "best_score": m["pool"]["best_score"]}
        for key in ("weights", "delta", "prev_slope", "prev_cor", "scores", "out_weights", "out_delta", "out_prev_slope"):
            if f"pool/{key}" in a:
                pool[key] = t(f"pool/{key}")
    history = {
        "epochs": {key: a[f"history/{key}"] for key in fmt.HISTORY_EPOCH},
        "units": {**{key: a[f"history/unit_{key}"] for key in fmt.HISTORY_UNIT},
                  "activation": list(m["history_unit_activations"])},
        "scores": {key: a[f"history/score_{key}"] for key in fmt.HISTORY_SCORE},
    }
    validation = None
    if m["validation"] is not None:
        vm = m["validation"]
        validation = {k: vm[k] for k in fmt.VALIDATION_META}
        validation["index"] = np.array(a["validation/index"], copy=True) if vm["split"] else None
        validation["best_weights"] = t("validation/best_weights") if vm["best_n_units"] >= 0 else None
    return {
        "config": raw.config,
        "run_id": raw.attrs["run_id"],
        "n_patterns": m["n_patterns"],
        "status": m["status"],
        "network": {"n_inputs": I, "n_outputs": m["n_outputs"], "output_activation": m["output_activation"],
                    "output_weights": t("network/output_weights"), "units": units},
        "output_slots": {"delta": t("optimizer/output_delta"), "prev_slope": t("optimizer/output_prev_slope")},
        "phase": m["phase"],
        "counters": m["counters"],
        "pool": pool,
        "errors": t("residual/errors"),
        "diffs": t("residual/diffs"),
        "history": history,
        "targets": m["targets"],
        "data_digest": m["data_digest"],
        "validation": validation,
        "input_scaling": {k: np.array(a[f"inputs/{k}"], copy=True) for k in ("mean", "scale")}
        if m["input_scaling"] else None,
    }


def take(state, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
         data_source: dict | None = None, numpy_generators: dict | None = None, copy: bool = True) -> dict:
    """Everything a snapshot of ``state`` needs (the raw tree; see the module doc).

    With ``copy=False`` the tree holds the live tensors: the caller must finish and write it
    before training takes another step (``save`` and the checkpoint manager's synchronous
    saves do).
    """
    backend = _check_backend(backend)
    tree = state.state_dict(copy)
    tree["config"] = state.config.to_json()  # cached text: the config is frozen
    return {
        "state": tree,
        "globals": capture_raw(numpy_generators),
        "backend": backend,
        "data": data_source,
        "versions": runtime_versions(),
        "attrs": _attrs(state.run_id, counter, parent_digest, time.time()),
    }


_VERSIONS: dict | None = None


def runtime_versions() -> dict:
    """The versions a bit-exact resume depends on (format 1.1): Python, cascor, NumPy, torch and
    the BLAS each uses. Read once per process (torch's build config costs milliseconds)."""
    global _VERSIONS
    if _VERSIONS is None:
        import platform
        import sys

        from .. import __version__

        torch = sys.modules.get("torch")
        numpy_blas = None
        try:
            numpy_blas = str(np.__config__.CONFIG["Build Dependencies"]["blas"]["name"])
        except Exception:  # older NumPy: no CONFIG dict
            pass
        torch_blas = None
        if torch is not None:
            try:
                found = [p.split("=", 1)[1] for p in torch.__config__.show().replace(",", "\n").split("\n")
                         if p.strip().startswith("BLAS_INFO=")]
                torch_blas = found[0].strip() if found else None
            except Exception:
                pass
        _VERSIONS = {"python": platform.python_version(), "cascor": __version__, "numpy": np.__version__,
                     "torch": getattr(torch, "__version__", None) if torch is not None else None,
                     "numpy_blas": numpy_blas, "torch_blas": torch_blas}
        _VERSIONS = {k: (str(v)[:128] if v is not None else None) for k, v in _VERSIONS.items()}
    return dict(_VERSIONS)


def _attrs(run_id: str, counter: int, parent_digest: str, created: float) -> dict:
    from .. import __version__

    return {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.version_string(),
        "library_version": __version__,
        "run_id": run_id,
        "snapshot_counter": int(counter),
        "parent_digest": parent_digest,
        "created": datetime.datetime.fromtimestamp(created, datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _check_backend(backend: dict | None) -> dict:
    backend = dict(backend or DEFAULT_BACKEND)
    if backend.get("scheduler") and "@" in str(backend["scheduler"]):
        raise SnapshotError("the scheduler address must not carry credentials")
    return backend


# -- the wire form: take() for the background writer ------------------------------------------
#
# At a checkpoint the training loop should do as little Python work as possible (measured: every
# microsecond of it counts ~3x inside a run, with the caches full of the training's own data).
# ``take_wire`` therefore reads the live objects with no per-element conversion: tensors as NumPy
# views, history columns as their ``array.array`` buffers, RNG states as the libraries return
# them. ``marshal`` copies it all into one message; the helper rebuilds the raw tree with
# ``raw_from_wire`` (the same tree ``take`` gives) and runs ``finish``. A test checks that both
# paths write the same datasets.


def _w(t) -> tuple:
    a = t.numpy()  # training tensors never require grad
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a.dtype.str, a.shape, a


def _r(spec) -> np.ndarray:
    dtype, shape, data = spec
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


class WireCursor:
    """What one sender has already shipped of append-only parts (frozen hidden units, history
    rows), so the next message carries only what was added. The receiver keeps the matching
    :class:`WireMirror`; both live as long as one background writer."""

    def __init__(self) -> None:
        self.network = self.column = None
        self.units = self.rows = 0

    def start(self, state) -> tuple[int, int]:
        """(first unit, first history row) to send; 0, 0 when the state is not the one followed."""
        net, column = state.network, state.history.epochs["epoch"]
        if net is not self.network or column is not self.column or len(net.units) < self.units or len(column) < self.rows:
            self.network, self.column, self.units, self.rows = net, column, 0, 0
        first = self.units, self.rows
        self.units, self.rows = len(net.units), len(column)
        return first


class WireMirror:
    """The receiving side of :class:`WireCursor`: appends each message's new parts."""

    def __init__(self) -> None:
        self.units: list = []
        self.columns: dict[str, bytearray] = {}

    def extend(self, w: dict) -> tuple[list, dict]:
        if w["units_from"] != len(self.units) and w["units_from"] != 0:
            raise SnapshotError(f"snapshot helper out of step: has {len(self.units)} units, "
                                f"the message continues from {w['units_from']}")
        if w["units_from"] == 0:
            self.units = []
        self.units.extend(w["units"])
        if w["rows_from"] == 0:
            self.columns = {k: bytearray() for k in w["history_epochs"]}
        for key, data in w["history_epochs"].items():
            self.columns[key] += data
        return self.units, self.columns


def take_wire(state, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
              data_source: dict | None = None, numpy_generators: dict | None = None,
              cursor: WireCursor | None = None) -> dict:
    """What ``take`` records, as plain values and buffers of the live state: ship it before the
    next step. With a ``cursor``, units and history rows already shipped are left out."""
    net, pool, h = state.network, state.pool, state.history
    first_unit, first_row = cursor.start(state) if cursor is not None else (0, 0)
    d, p = state.output_slots.views()
    wire = {
        "config": state.config.to_json(), "run_id": state.run_id, "n_patterns": state.n_patterns,
        "status": state.status, "n_inputs": net.n_inputs, "n_outputs": net.n_outputs,
        "output_activation": net.output_activation, "output_weights": _w(net.output_weights),
        "units_from": first_unit,
        "units": [(_w(u.weights), u.activation, u.steepness) for u in net.units[first_unit:]],
        "output_delta": _w(d), "output_prev_slope": _w(p),
        "phase": vars(state.phase), "counters": vars(state.counters),
        "errors": _w(state.errors), "diffs": _w(state.diffs),
        "rows_from": first_row,
        "history_epochs": {k: v[first_row:] for k, v in h.epochs.items()} if first_row else h.epochs,
        "history_units": h.units, "history_scores": h.scores,
        "targets": state.targets, "data_digest": state.data_digest,
        "validation": None,
        "input_scaling": None if state.input_scaling is None else {  # (dtype, shape, buffer), like tensors
            k: (a.dtype.str, a.shape, a) for k, a in (("mean", state.input_scaling.mean),
                                                     ("scale", state.input_scaling.scale))},
        "pool": None,
        "globals": capture_raw(numpy_generators), "backend": _check_backend(backend), "data": data_source,
        "versions": runtime_versions(), "counter": int(counter), "parent_digest": parent_digest, "created": time.time(),
    }
    v = state.validation
    if v is not None:
        wire["validation"] = dict(v.state_dict(copy=False),  # arrays as (dtype, shape, buffer), like tensors
                                  index=None if v.index is None else (v.index.dtype.str, v.index.shape, v.index),
                                  best_weights=None if v.best_weights is None else _w(v.best_weights))
    if pool is not None:
        pd, pp = pool.slots.views()
        wire["pool"] = {"plan": pool.plan, "best": pool.best, "best_score": pool.best_score,
                        "weights": _w(pool.weights), "delta": _w(pd), "prev_slope": _w(pp),
                        "prev_cor": _w(pool.prev_cor), "scores": _w(pool.scores)}
        if pool.cascade2:
            od, op = pool.out_slots.views()
            wire["pool"].update(out_weights=_w(pool.out_weights), out_delta=_w(od), out_prev_slope=_w(op))
    return wire


def raw_from_wire(w: dict, mirror: WireMirror | None = None) -> dict:
    """``take_wire``'s message (buffers as bytes) -> the raw tree ``take`` would have returned.

    ``mirror`` holds the parts earlier messages of the same sender shipped (needed whenever
    that sender used a cursor)."""
    from ..history import state_from_columns

    units, columns = (mirror or WireMirror()).extend(w)
    pool = None
    if w["pool"] is not None:
        wp = w["pool"]
        pool = {"activations": [a for a, _ in wp["plan"]],
                "steepnesses": np.array([s for _, s in wp["plan"]], dtype=np.float64),
                "best": wp["best"], "best_score": wp["best_score"]}
        for key in ("weights", "delta", "prev_slope", "prev_cor", "scores", "out_weights", "out_delta", "out_prev_slope"):
            if key in wp:
                pool[key] = _r(wp[key])
    state = {
        "config": w["config"], "run_id": w["run_id"], "n_patterns": w["n_patterns"], "status": w["status"],
        "network": {"n_inputs": w["n_inputs"], "n_outputs": w["n_outputs"], "output_activation": w["output_activation"],
                    "output_weights": _r(w["output_weights"]),
                    "units": [{"weights": _r(u), "activation": a, "steepness": s} for u, a, s in units]},
        "output_slots": {"delta": _r(w["output_delta"]), "prev_slope": _r(w["output_prev_slope"])},
        "phase": w["phase"], "counters": w["counters"], "pool": pool,
        "errors": _r(w["errors"]), "diffs": _r(w["diffs"]),
        "history": state_from_columns(columns, w["history_units"], w["history_scores"]),
        "targets": w["targets"], "data_digest": w["data_digest"],
        "validation": None if w["validation"] is None else dict(
            w["validation"], index=None if w["validation"]["index"] is None else _r(w["validation"]["index"]),
            best_weights=None if w["validation"]["best_weights"] is None else _r(w["validation"]["best_weights"])),
        "input_scaling": None if w["input_scaling"] is None else {k: _r(v) for k, v in w["input_scaling"].items()},
    }
    return {"state": state, "globals": w["globals"], "backend": w["backend"], "data": w["data"],
            "versions": w.get("versions"), "attrs": _attrs(w["run_id"], w["counter"], w["parent_digest"], w["created"])}


def finish(raw: dict) -> tuple[dict[str, np.ndarray], dict]:
    """A raw tree -> (arrays, root attributes) of a snapshot file, ready for ``write_snapshot``."""
    meta, arrays = encode_state(raw["state"])  # tensor or array leaves alike
    glob, glob_arrays = encode_globals(raw["globals"])
    arrays.update(glob_arrays)
    arrays["meta"] = fmt.encode_json(meta)
    arrays["config"] = np.frombuffer(raw["state"]["config"].encode(), dtype=np.uint8)
    arrays["runtime/meta"] = fmt.encode_json({"globals": glob, "backend": raw["backend"], "data": raw["data"],
                                              "versions": raw.get("versions")})
    return arrays, dict(raw["attrs"])
