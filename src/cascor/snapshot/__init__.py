"""Complete-state HDF5 snapshots: save, load, verify, inspect.

``save`` writes a :class:`~cascor.state.TrainState` (plus the process-global RNG states
and the backend settings) atomically; ``load`` verifies everything and rebuilds the state
so that training continues bit-identically. ``verify`` and ``inspect`` never import torch.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from ..errors import CorruptSnapshotError, SnapshotError, StateError
from . import format as fmt
from .globals import capture, restore
from .migrate import migrate
from .reader import Limits, RawSnapshot, read_snapshot
from .writer import write_snapshot

__all__ = ["save", "load", "verify", "inspect", "read_snapshot", "Limits", "RawSnapshot", "Snapshot"]

DEFAULT_BACKEND = {"name": "local", "workers": None, "scheduler": None}


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _as(t, dtype) -> np.ndarray:
    """The array in ``dtype``, copying only when the dtype differs (state_dict already cloned it)."""
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
        "targets": state_dict["targets"],
        "data_digest": state_dict["data_digest"],
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
    }
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
    }


class Snapshot:
    """A loaded, verified snapshot: the rebuilt state plus the file's identity."""

    def __init__(self, raw: RawSnapshot, state):
        self.raw = raw
        self.state = state
        self.path = raw.path
        self.content_digest = raw.attrs["content_digest"]
        self.counter = int(raw.attrs["snapshot_counter"])
        self.backend = dict(raw.runtime.get("backend") or DEFAULT_BACKEND)
        self.data_source = raw.runtime.get("data")

    def restore_globals(self, numpy_generators: dict | None = None) -> None:
        restore(self.raw.runtime.get("globals") or {}, self.raw.arrays, numpy_generators)


def prepare(state, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
            data_source: dict | None = None, numpy_generators: dict | None = None) -> tuple[dict, dict]:
    """The arrays and root attributes of a snapshot of ``state`` (everything but the writing)."""
    from .. import __version__

    meta, arrays = encode_state(state.state_dict())
    glob, glob_arrays = capture(numpy_generators)
    runtime = {"globals": glob, "backend": dict(backend or DEFAULT_BACKEND), "data": data_source}
    if runtime["backend"].get("scheduler") and "@" in str(runtime["backend"]["scheduler"]):
        raise SnapshotError("the scheduler address must not carry credentials")
    arrays.update(glob_arrays)
    arrays["meta"] = fmt.encode_json(meta)
    arrays["config"] = np.frombuffer(state.config.to_json().encode(), dtype=np.uint8)
    arrays["runtime/meta"] = fmt.encode_json(runtime)
    attrs = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.version_string(),
        "library_version": __version__,
        "run_id": state.run_id,
        "snapshot_counter": int(counter),
        "parent_digest": parent_digest,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return arrays, attrs


def save(state, path: str, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
         data_source: dict | None = None, numpy_generators: dict | None = None) -> str:
    """Write ``state`` to ``path`` atomically; returns the content digest.

    ``data_source`` tells ``cascor resume`` where the training data came from (a dataset
    name or a file); the data's SHA-256 is part of the state, so a changed file is refused.
    """
    arrays, attrs = prepare(state, counter=counter, parent_digest=parent_digest, backend=backend,
                            data_source=data_source, numpy_generators=numpy_generators)
    return write_snapshot(path, arrays, attrs)


def load(path: str, *, restore_globals: bool = False, limits: Limits = Limits(),
         numpy_generators: dict | None = None) -> Snapshot:
    """Verify ``path`` completely, migrate it, and rebuild the TrainState."""
    from ..state import TrainState
    from ..errors import ConfigError

    raw = migrate(read_snapshot(path, limits))
    try:
        state = TrainState.from_state_dict(decode_state(raw))
    except (StateError, ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CorruptSnapshotError(f"{path}: the state does not rebuild: {exc}") from None
    snap = Snapshot(raw, state)
    if restore_globals:
        snap.restore_globals(numpy_generators)
    return snap


def verify(path: str, limits: Limits = Limits()) -> RawSnapshot:
    """Check every digest, the structure and the cascade shapes; builds nothing, imports no torch."""
    raw = migrate(read_snapshot(path, limits))
    _check_semantics(raw)
    return raw


def _check_semantics(raw: RawSnapshot) -> None:
    """Validate names and values that the layout check cannot see (through closed registries)."""
    from ..activations import check_activation
    from ..config import CascorConfig
    from ..errors import ConfigError

    try:
        CascorConfig.from_dict(raw.config)
        check_activation(raw.meta["output_activation"])
        for name in raw.meta["hidden_activations"]:
            check_activation(name)
        if raw.meta["pool"] is not None:
            for name in raw.meta["pool"]["activations"]:
                check_activation(name)
    except ConfigError as exc:
        raise CorruptSnapshotError(f"{raw.path}: {exc}") from None


def inspect(path: str, limits: Limits = Limits()) -> dict:
    """A summary from metadata only (verified file digest, no tensor read beyond the JSON)."""
    raw = read_snapshot(path, limits, read_data=False)
    m = raw.meta
    return {
        "path": os.fspath(path),
        "format": raw.attrs["format"],
        "format_version": raw.attrs["format_version"],
        "library_version": raw.attrs["library_version"],
        "run_id": raw.attrs["run_id"],
        "snapshot_counter": int(raw.attrs["snapshot_counter"]),
        "parent_digest": raw.attrs["parent_digest"],
        "content_digest": raw.attrs["content_digest"],
        "created": raw.attrs["created"],
        "status": m["status"],
        "phase": m["phase"]["name"],
        "epoch": m["counters"]["epoch"],
        "output_epochs": m["counters"]["output_epochs"],
        "candidate_epochs": m["counters"]["candidate_epochs"],
        "hidden_units": len(m["hidden_activations"]),
        "inputs": m["n_inputs"],
        "outputs": m["n_outputs"],
        "patterns": m["n_patterns"],
        "backend": raw.runtime.get("backend"),
        "config": raw.config,
    }


def upgrade(path: str, out: str) -> str:
    """Migrate ``path`` to the current format and write it to ``out`` atomically (torch-free)."""
    raw = migrate(read_snapshot(path))
    _check_semantics(raw)
    arrays = dict(raw.arrays)
    arrays["meta"] = fmt.encode_json(raw.meta)
    arrays["config"] = fmt.encode_json(raw.config)
    arrays["runtime/meta"] = fmt.encode_json(raw.runtime)
    attrs = {k: v for k, v in raw.attrs.items() if k != "content_digest"}
    attrs["format_version"] = fmt.version_string()
    write_snapshot(out, arrays, attrs)
    return fmt.version_string()
