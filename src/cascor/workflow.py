"""Train / resume / evaluate a run directory: the logic behind the CLI, without printing.

A run directory holds ``ckpt-<epoch>.h5`` snapshots, ``latest.h5`` (the newest complete
snapshot) and, once training is finished, ``final.h5``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATION_SPECS
from .config import CascorConfig
from .datasets import Dataset, decode_outputs, encode_targets, load_dataset, load_file
from .errors import DataError


def load_data(dataset: str | None = None, data: str | None = None, target: str | None = None) -> tuple[Dataset, dict]:
    """A Dataset plus the descriptor ``cascor resume`` uses to load the same data again."""
    if (dataset is None) == (data is None):
        raise DataError("give exactly one of --dataset NAME or --data FILE")
    if dataset is not None:
        return load_dataset(dataset), {"dataset": dataset}
    return load_file(data, target=target), {"file": os.path.abspath(data), "target": target}


def load_source(source: dict | None) -> Dataset:
    if not source:
        raise DataError("this snapshot does not record its training data; pass --dataset or --data")
    if "dataset" in source:
        return load_dataset(source["dataset"])
    return load_file(source["file"], target=source.get("target"))


def adapt_config(cfg: CascorConfig, ds: Dataset, explicit: set[str]) -> CascorConfig:
    """Regression data gets linear outputs and the ErrorIndex criterion unless the user chose otherwise."""
    if ds.task == "regression":
        changes = {}
        if "output_activation" not in explicit:
            changes["output_activation"] = "linear"
        if "error_measure" not in explicit:
            changes["error_measure"] = "index"
        cfg = cfg.replace(**changes)
    return cfg


def targets_for(ds: Dataset, cfg: CascorConfig, X=None, y=None) -> tuple[np.ndarray, np.ndarray, dict]:
    spec = ACTIVATION_SPECS[cfg.output_activation]
    X = ds.X if X is None else X
    y = ds.y if y is None else y
    if ds.task == "classification":
        Y = encode_targets(y, ds.classes, spec.low, spec.high)
        info = {"task": "classification", "classes": [c.item() if hasattr(c, "item") else c for c in ds.classes]}
    else:
        Y = np.asarray(y, dtype=np.float32)
        Y = Y[:, None] if Y.ndim == 1 else Y
        info = {"task": "regression", "classes": None}
    return np.asarray(X, dtype=np.float32), Y, info


def score(network, targets: dict, X, y) -> dict:
    """Accuracy for classification; RMSE and R^2 for regression."""
    import torch

    with torch.no_grad():
        out = network(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy()
    if targets["task"] == "classification":
        spec = ACTIVATION_SPECS[network.output_activation]
        classes = np.asarray(targets["classes"])
        pred = decode_outputs(out, classes, spec.low, spec.high)
        return {"accuracy": float(np.mean(pred == np.asarray(y).astype(classes.dtype)))}
    y = np.asarray(y, dtype=np.float64).reshape(out.shape)
    rmse = float(np.sqrt(np.mean((out - y) ** 2)))
    var = float(np.var(y))
    return {"rmse": rmse, "r2": 1.0 - rmse**2 / var if var > 0 else float("nan")}


def backend_from(recorded: dict | None, override: dict):
    """The backend to use: the command line's choice, else what the snapshot recorded."""
    from .parallel import make_backend

    recorded = recorded or {"name": "local"}
    name = override.get("backend") or (override.get("scheduler") and "dask") or recorded.get("name") or "local"
    same = name == recorded.get("name")
    workers = override.get("workers") or (recorded.get("workers") if same else None)
    scheduler = override.get("scheduler") or (recorded.get("scheduler") if same else None)
    return make_backend(name, workers=workers, scheduler=scheduler)


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop at the next epoch boundary (the epoch finishes, then a save)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __call__(self, engine, event) -> bool:
        return self.requested


@dataclass
class RunOutcome:
    engine: object
    snapshot: str
    finished: bool
    train_seconds: float


def run_directory(engine, out: str, *, data_source: dict, stop_after: int | None, checkpoint_every: int,
                  keep_last: int, callbacks=(), protect=(), counter: int = 0, parent_digest: str = "",
                  backend: dict | None = None) -> RunOutcome:
    """Run to the end (or to ``stop_after``), checkpointing into ``out``; always leaves a snapshot."""
    from .snapshot.manager import CheckpointManager, Retention
    from .trainer import run

    os.makedirs(out, exist_ok=True)
    manager = CheckpointManager(out, every=checkpoint_every, at_install=True, retention=Retention(keep_last=keep_last),
                                protect=set(protect), backend=backend, data_source=data_source, counter=counter,
                                parent_digest=parent_digest, background=True).start()
    # The handler stays installed until the last snapshot is on disk: a second Ctrl-C or
    # SIGTERM while it is written changes nothing, and the run still exits cleanly.
    with StopRequest() as stop:
        try:
            t0 = time.perf_counter()
            run(engine, stop_at_epoch=stop_after, callbacks=(*callbacks, manager, stop))
            seconds = time.perf_counter() - t0 - manager.seconds
            state = engine.state
            # The last snapshot is written synchronously, after every pending background write.
            path = manager.save(state, name="final.h5" if state.done else None, wait=True)
        finally:
            manager.close()
    return RunOutcome(engine, path, state.done, seconds)


def summarize(engine, ds: Dataset, train_seconds: float, snapshot: str) -> dict:
    st = engine.state
    c = st.counters
    net = st.network
    X, _, _ = targets_for(ds, st.config)
    summary = {
        "solved": st.status == "solved",
        "status": st.status,
        "finished": st.done,
        "hidden_units": net.n_hidden,
        "epochs": c.epoch,
        "output_epochs": c.output_epochs,
        "candidate_epochs": c.candidate_epochs,
        "train_seconds": round(train_seconds, 6),
        "true_error": c.true_error,
        "error_bits": c.error_bits,
        "seed": st.config.seed,
        "run_id": st.run_id,
        "snapshot": snapshot,
    }
    train = score(net, st.targets, X, ds.y)
    summary.update({f"train_{k}": v for k, v in train.items()})
    if ds.X_test is not None:
        test = score(net, st.targets, ds.X_test, ds.y_test)
        summary.update({f"test_{k}": v for k, v in test.items()})
    return summary
