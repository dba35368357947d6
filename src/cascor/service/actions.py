"""What the API's requests do to the runs directory, as plain blocking functions (the app runs
them in a thread, never in its event loop): check a new run's settings the way ``cascor train``
would, take in uploads, prepare a branch, compute a decision boundary, score and predict.

Everything that reads a snapshot goes through the safe reader; an uploaded file is parsed by the
same loaders as ``--data`` and never unpickled.
"""

from __future__ import annotations

import os
import secrets
import shutil

import numpy as np

from ..errors import CascorError
from .store import UPLOAD_NAMES, RunStore, ServiceError

UPLOADS = ".uploads"  # under the runs directory; never a run id (ids start with a letter or digit)
BRANCH_FIELDS = ("max_units", "checkpoint_every", "keep_last")


def check_spec(spec: dict) -> dict:
    """A new run's settings, refused with the CLI's message if ``cascor train`` would refuse them."""
    from .. import config as cfgmod
    from ..datasets import DATASET_NAMES

    if spec.get("dataset") is not None and spec["dataset"] not in DATASET_NAMES:
        raise ServiceError(f"unknown dataset {spec['dataset']!r}; expected one of: {', '.join(DATASET_NAMES)}")
    cfg = cfgmod.preset(spec.get("preset") or "default").with_overrides(spec.get("sets", []))
    if spec.get("seed") is not None:
        cfg.replace(seed=spec["seed"])  # (validated like the CLI's --seed)
    return spec


def config_sets(config: dict) -> list[str]:
    """``--set`` items from a JSON object of config values."""
    out = []
    for key, value in config.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append(f"{key}={value}")
    return out


def _load_upload(store: RunStore, data: bytes, filename: str, target=None, keep: bool = False):
    """(stored name or None, Dataset) of an uploaded CSV/NPZ, parsed like ``--data``; refused with
    the loader's message (naming the upload, not the temporary path). Kept in the uploads folder
    for a later run when ``keep``, else removed."""
    from ..datasets import load_file

    kind = "npz" if filename.lower().endswith(".npz") or data[:4] == b"PK\x03\x04" else "csv"
    folder = os.path.join(store.root, UPLOADS)
    os.makedirs(folder, exist_ok=True)
    name = f"{secrets.token_hex(8)}.{kind}"
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    try:
        ds = load_file(path, target=target)
    except CascorError as exc:
        os.unlink(path)
        raise ServiceError(f"upload {filename!r}: {exc}".replace(path, filename)) from None
    if not keep:
        os.unlink(path)
        return None, ds
    return name, ds


def save_upload(store: RunStore, data: bytes, filename: str) -> dict:
    """Keep an uploaded CSV/NPZ for a new run after parsing it like ``--data`` (a file that does
    not load is refused now, with the loader's message)."""
    name, ds = _load_upload(store, data, filename, keep=True)
    return {"upload": name, "rows": int(len(ds.X)), "features": int(ds.X.shape[1]), "task": ds.task}


def sweep_uploads(store: RunStore, max_age: float = 86400.0) -> int:
    """Remove uploads no run took within ``max_age`` seconds (at server start)."""
    import time

    folder = os.path.join(store.root, UPLOADS)
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            if time.time() - os.lstat(path).st_mtime > max_age:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
    return removed


def take_upload(store: RunStore, upload: str, run_id: str) -> str:
    """Move an upload into its run directory; returns its name there."""
    if not isinstance(upload, str) or "/" in upload or upload.startswith(".") or \
            os.path.splitext(upload)[1] not in (".csv", ".npz"):
        raise ServiceError(f"no upload {upload!r}")
    source = os.path.join(store.root, UPLOADS, upload)
    if not os.path.isfile(source):
        raise ServiceError(f"no upload {upload!r} (uploads are used once)")
    name = UPLOAD_NAMES[0] if upload.endswith(".csv") else UPLOAD_NAMES[1]
    os.replace(source, os.path.join(store.path(run_id), name))
    return name


def prepare_branch(store: RunStore, parent: str, name: str, new_id: str, changes: dict) -> dict:
    """Copy ``parent``'s snapshot ``name`` (and its uploaded data) into the new run's directory,
    which becomes that run's continuation: the same run id, its own files from here on. Only
    settings that can apply to a continued run may change; the rest are refused with why."""
    from ..snapshot.rundir import write_owner
    from ..trainer import extend

    bad = sorted(set(changes) - set(BRANCH_FIELDS))
    if bad:
        raise ServiceError(f"a branch continues a run exactly; {', '.join(bad)} cannot change on a continued run "
                           f"(only {', '.join(BRANCH_FIELDS)}): start a new run to change it")
    source = store.snapshot_path(parent, name)
    loaded = store.load_snapshot(source)
    if changes.get("max_units") is not None:
        extend(loaded.state, int(changes["max_units"]))  # refused here, with its reason, not in the worker
    directory = store.path(new_id)
    target = os.path.join(directory, os.path.basename(source))
    shutil.copyfile(source, target)
    write_owner(directory, loaded.state.run_id)
    parent_record = store.read(parent)
    spec = {k: v for k, v in (parent_record.get("spec") or {}).items() if k in ("dataset", "data", "target")}
    parent_dir = store.path(parent)
    for data in UPLOAD_NAMES:
        if os.path.exists(os.path.join(parent_dir, data)):
            shutil.copyfile(os.path.join(parent_dir, data), os.path.join(directory, data))
            spec["data"] = data
    spec.update({k: v for k, v in changes.items() if v is not None})
    return {"spec": spec, "parent": {"run": parent, "snapshot": name, "epoch": loaded.state.counters.epoch}}


def import_snapshot(store: RunStore, data: bytes, new_id: str) -> dict:
    """A snapshot someone uploads becomes a run that can be resumed or branched -- if the safe
    reader accepts it. Its recorded data is followed only for a built-in dataset (a recorded
    file is a stranger's path: it is never read)."""
    from ..snapshot import load
    from ..snapshot.manager import CKPT_RE

    directory = store.path(new_id)
    temp = os.path.join(directory, ".upload.h5")
    with open(temp, "wb") as f:
        f.write(data)
    try:
        loaded = load(temp)
    except CascorError as exc:
        os.unlink(temp)
        raise ServiceError(f"uploaded snapshot: {exc}".replace(temp, "the upload")) from None
    name = f"ckpt-{loaded.state.counters.epoch:08d}.h5"
    assert CKPT_RE.match(name)
    os.replace(temp, os.path.join(directory, name))
    source = loaded.data_source if isinstance(loaded.data_source, dict) else {}
    spec = {"dataset": source["dataset"]} if "dataset" in source else {}
    return {"spec": spec, "parent": {"imported": name, "run_id": loaded.state.run_id,
                                     "epoch": loaded.state.counters.epoch}}


def _network_and_data(store: RunStore, run_id: str):
    from .. import workflow

    path = store.newest_snapshot(run_id)
    if path is None:
        raise ServiceError(f"run {run_id} has no snapshot yet", 409)
    loaded = store.load_snapshot(path)
    return loaded, path, workflow


def boundary(store: RunStore, run_id: str, size: int = 64) -> dict:
    """The newest snapshot's network over a grid covering its 2-D training data, and the data."""
    from ..exporters.model import model_from

    loaded, path, workflow = _network_and_data(store, run_id)
    state = loaded.state
    if state.network.n_inputs != 2:
        raise ServiceError(f"a decision boundary needs a 2-D problem; run {run_id} has "
                           f"{state.network.n_inputs} inputs", 409)
    ds = workflow.load_source(loaded.data_source, trusted=workflow.source_trusted(path, state.run_id),
                              where=f"run {run_id}")
    X = np.asarray(ds.X, dtype=np.float64)
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    xs, ys = np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    model = model_from(state)
    if model.task == "classification":
        proba = model.predict_proba(grid)
        value = proba[:, 1] if proba.shape[1] == 2 else np.argmax(proba, axis=1) / max(1, proba.shape[1] - 1)
        labels = np.searchsorted(np.asarray(model.classes), np.asarray(ds.y)) if len(model.classes) else ds.y
    else:
        out = model.predict(grid)
        out = out if out.ndim == 1 else out[:, 0]
        span = float(out.max() - out.min()) or 1.0
        value = (out - out.min()) / span
        labels = np.zeros(len(X), dtype=int)
    step = max(1, len(X) // 600)
    return {"snapshot": os.path.basename(path), "epoch": state.counters.epoch, "hidden_units": state.network.n_hidden,
            "size": size, "x": [float(lo[0]), float(hi[0])], "y": [float(lo[1]), float(hi[1])],
            "values": np.round(value, 3).tolist(), "task": model.task,
            "classes": [str(c) for c in model.classes] if model.task == "classification" else [],
            "points": {"x": X[::step, 0].round(4).tolist(), "y": X[::step, 1].round(4).tolist(),
                       "label": np.asarray(labels)[::step].astype(int).tolist()}}


def evaluate(store: RunStore, run_id: str, data: bytes, filename: str, target=None) -> dict:
    """Scores of the run's network (the best on held-out data) on uploaded data."""
    loaded, path, workflow = _network_and_data(store, run_id)
    state = loaded.state
    _, ds = _load_upload(store, data, filename, target)
    if ds.X.shape[1] != state.network.n_inputs:
        raise ServiceError(f"the network has {state.network.n_inputs} inputs but the upload has {ds.X.shape[1]} "
                           "features")
    ds = workflow.scaled(ds, state.input_scaling)
    return {"snapshot": os.path.basename(path), "rows": len(ds.X), "hidden_units": state.best_network().n_hidden,
            **workflow.score(state.best_network(), state.targets, ds.X, ds.y)}


def predict(store: RunStore, run_id: str, data: bytes, filename: str) -> dict:
    """Predictions of the run's network for uploaded rows (CSV without a target column, or NPZ ``X``)."""
    from ..exporters.model import model_from

    loaded, path, _ = _network_and_data(store, run_id)
    state = loaded.state
    X = _rows(data, filename, state.network.n_inputs)
    model = model_from(state)
    out = {"snapshot": os.path.basename(path), "prediction": np.asarray(model.predict(X)).tolist()}
    if model.task == "classification":
        out["probabilities"] = np.round(model.predict_proba(X), 6).tolist()
        out["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes]
    return out


def _rows(data: bytes, filename: str, n_inputs: int) -> np.ndarray:
    import io

    if data[:4] == b"PK\x03\x04" or filename.endswith(".npz"):
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                X = np.asarray(z["X"], dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 -- any damage is the upload's
            raise ServiceError(f"upload {filename!r}: not an .npz with an array X ({type(exc).__name__})") from None
    else:
        try:
            text = data.decode("utf-8")
            rows = [line.split(",") for line in text.splitlines() if line.strip()]
            try:
                float(rows[0][0])
            except ValueError:
                rows = rows[1:]  # a header
            X = np.asarray(rows, dtype=np.float64)
        except (UnicodeDecodeError, ValueError, IndexError):
            raise ServiceError(f"upload {filename!r}: expected CSV rows of {n_inputs} numbers") from None
    if X.ndim != 2 or X.shape[1] != n_inputs or not np.all(np.isfinite(X)):
        raise ServiceError(f"upload {filename!r}: expected rows of {n_inputs} finite numbers, found shape "
                           f"{list(X.shape)}")
    return X
