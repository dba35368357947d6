"""Complete-state HDF5 snapshots: save, load, verify, inspect.

``save`` writes a :class:`~cascor.state.TrainState` (plus the process-global RNG states
and the backend settings) atomically; ``load`` verifies everything and rebuilds the state
so that training continues bit-identically. ``verify`` and ``inspect`` never import torch.
"""

from __future__ import annotations

import os

from ..errors import CorruptSnapshotError, StateError
from . import format as fmt
from .codec import DEFAULT_BACKEND, decode_state, encode_state, finish, take
from .globals import restore
from .migrate import migrate
from .reader import Limits, RawSnapshot, read_snapshot
from .writer import write_snapshot

__all__ = ["save", "load", "verify", "inspect", "prepare", "take", "finish", "encode_state", "decode_state",
           "read_snapshot", "Limits", "RawSnapshot", "Snapshot"]


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
        self.versions = raw.runtime.get("versions")  # None: written by format 1.0, unknown

    def version_differences(self) -> list[str]:
        """What differs between the versions this snapshot was written with and this process's
        (a resume is bit-exact only with the same ones); empty when they match or are unknown."""
        from .codec import runtime_versions

        if not self.versions:
            return []
        here = runtime_versions()
        return [f"{k} {self.versions.get(k)} -> {here.get(k)}" for k in sorted(here)
                if k in self.versions and self.versions.get(k) != here.get(k) and here.get(k) is not None]

    def restore_globals(self, numpy_generators: dict | None = None) -> None:
        restore(self.raw.runtime.get("globals") or {}, self.raw.arrays, numpy_generators)


def prepare(state, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
            data_source: dict | None = None, numpy_generators: dict | None = None) -> tuple[dict, dict]:
    """The arrays and root attributes of a snapshot of ``state`` (everything but the writing)."""
    return finish(take(state, counter=counter, parent_digest=parent_digest, backend=backend,
                       data_source=data_source, numpy_generators=numpy_generators))


def save(state, path: str, *, counter: int = 0, parent_digest: str = "", backend: dict | None = None,
         data_source: dict | None = None, numpy_generators: dict | None = None) -> str:
    """Write ``state`` to ``path`` atomically; returns the content digest.

    ``data_source`` tells ``cascor resume`` where the training data came from (a dataset
    name or a file); the data's SHA-256 is part of the state, so a changed file is refused.
    """
    arrays, attrs = finish(take(state, counter=counter, parent_digest=parent_digest, backend=backend,
                                data_source=data_source, numpy_generators=numpy_generators, copy=False))
    return write_snapshot(path, arrays, attrs)  # before anything can change the live tensors


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
        if raw.meta.get("input_scaling") and raw.arrays:  # format 1.5 (arrays: a read with data)
            from ..inputs import InputScaling

            InputScaling.from_state_dict({"mean": raw.arrays["inputs/mean"], "scale": raw.arrays["inputs/scale"]},
                                         raw.meta["n_inputs"])
    except (ConfigError, StateError) as exc:
        raise CorruptSnapshotError(f"{raw.path}: {exc}") from None


def inspect(path: str, limits: Limits = Limits()) -> dict:
    """A summary from metadata (verified file digest; of the tensors only the small input scaling
    is read, so a value that would poison every prediction is refused here too)."""
    raw = migrate(read_snapshot(path, limits, read_data=("inputs/mean", "inputs/scale")))
    _check_semantics(raw)
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
        "input_scaling": m["input_scaling"],
        "backend": raw.runtime.get("backend"),
        "versions": raw.runtime.get("versions"),
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
