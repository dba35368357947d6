"""Train / resume / evaluate a run directory: the logic behind the CLI, without printing.

A run directory holds ``ckpt-<epoch>.h5`` snapshots, ``latest.h5`` (the newest complete
snapshot) and, once training is finished, ``final.h5``.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, replace

import numpy as np

from .activations import ACTIVATION_SPECS
from .config import CascorConfig
from .config import REGRESSION_OUTPUT_STEP, cross_entropy_output
from .config import recommended as recommended_config
from .datasets import DATASET_NAMES, Dataset, decode_outputs, encode_targets, load_dataset, load_file
from .errors import CascorError, DataError


def load_data(dataset: str | None = None, data: str | None = None, target: str | None = None) -> tuple[Dataset, dict]:
    """A Dataset plus the descriptor ``cascor resume`` uses to load the same data again."""
    if (dataset is None) == (data is None):
        raise DataError("give exactly one of --dataset NAME or --data FILE")
    if dataset is not None:
        return load_dataset(dataset), {"dataset": dataset}
    return load_file(data, target=target), {"file": os.path.abspath(data), "target": target}


def load_source(source: dict | None, *, trusted: bool = False, where: str = "this snapshot") -> Dataset:
    """The training data a snapshot records. A snapshot may come from anyone, so what it
    records is only a hint: a built-in dataset name is safe to follow (names resolve through
    a closed registry); a recorded *file* is read only when ``trusted`` (the snapshot lies in
    its own run directory), never when it is not an absolute path to a regular file, and
    its content never appears in an error message."""
    if not source:
        raise DataError(f"{where} does not record its training data; pass --dataset or --data")
    if not isinstance(source, dict):
        raise DataError(f"{where} records its training data in an unknown form; pass --dataset or --data")
    if "dataset" in source:
        name = source["dataset"]
        if not isinstance(name, str) or name not in DATASET_NAMES:
            raise DataError(f"{where} names an unknown dataset; pass --dataset or --data")
        return load_dataset(name)
    path, target = source.get("file"), source.get("target")
    if not isinstance(path, str) or not (target is None or isinstance(target, str)):
        raise DataError(f"{where} records its training data in an unknown form; pass --dataset or --data")
    shown = printable(path)
    if not trusted:
        hint = f" --target {printable(target)}" if target is not None else ""
        raise DataError(f"{where} records its training data as {shown}; cascor reads a recorded file only for a "
                        f"snapshot in its own run directory: pass --data {shown}{hint} to use it")
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        raise DataError(f"{where} records a data path that is not absolute and normalised ({shown}); pass --data")
    return load_file(path, target=target, quote=False)


def source_trusted(snapshot_path: str, run_id: str) -> bool:
    """A snapshot is in its own run directory: the directory's run.json names the snapshot's run."""
    from .snapshot.rundir import read_owner

    try:
        return read_owner(os.path.dirname(os.path.realpath(snapshot_path))) == run_id
    except CascorError:
        return False


def adapt_config(cfg: CascorConfig, ds: Dataset, explicit: set[str], recommended: bool = False) -> CascorConfig:
    """Regression data gets linear outputs, the ErrorIndex criterion and a stable output step
    (``config.REGRESSION_OUTPUT_STEP``) unless the user chose otherwise. ``recommended`` (the
    ``default`` preset) adds what the estimators add (``config.RECOMMENDED``: output L2, and for
    classification cross-entropy outputs with the matching activation) where the user chose
    nothing else."""
    if recommended:
        chosen = cfg.output_activation if "output_activation" in explicit else None
        changes = {k: v for k, v in recommended_config(ds.task, chosen).items() if k not in explicit}
        if chosen is None and changes.get("output_loss") == "cross_entropy":
            changes["output_activation"] = cross_entropy_output(len(ds.classes))
        cfg = cfg.replace(**changes)
    if ds.task == "regression":
        changes = {}
        if "output_activation" not in explicit:
            changes["output_activation"] = "linear"
            changes.update({k: v for k, v in REGRESSION_OUTPUT_STEP.items() if k not in explicit})
        if "error_measure" not in explicit:
            changes["error_measure"] = "index"
        cfg = cfg.replace(**changes)
    return cfg


# Input columns whose standard deviation falls outside this range get a warning when a run uses a
# file's columns as they are (--no-scale-inputs): on raw wine (std 0.12 .. 314) the CLI reached
# .50-.63 test accuracy where the same file standardised reached .98 (docs/results.md).
WELL_SCALED = (0.1, 10.0)


def scale_warning(ds: Dataset, where: str) -> str | None:
    """A one-line warning when ``ds``'s input columns are far from unit scale, else None."""
    std = np.asarray(ds.X, dtype=np.float64).std(axis=0)
    std = std[std > 0]
    if not len(std):
        return None
    if WELL_SCALED[0] <= std.min() and std.max() <= WELL_SCALED[1]:
        return None
    return (f"warning: the input columns of {where} have standard deviations from {std.min():.3g} to "
            f"{std.max():.3g}; --no-scale-inputs uses them as they are, and such scales cost accuracy: "
            "leave the standardisation on, or standardise them first (mean 0, standard deviation 1)")


def scaled(ds: Dataset, scaling) -> Dataset:
    """``ds`` as the network sees it: its inputs (and test inputs) through the run's
    :class:`~cascor.inputs.InputScaling` (``ds`` itself when the run has none). Checked against
    the scaling's width first, so a file with other columns gets the usual one-line error."""
    if ds is None or scaling is None:
        return ds
    if ds.X.shape[1] != scaling.n_inputs:
        raise DataError(f"the network has {scaling.n_inputs} inputs but the data has {ds.X.shape[1]} features")
    X_test = None if ds.X_test is None else scaling.apply(ds.X_test)
    return replace(ds, X=scaling.apply(ds.X), X_test=X_test)


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
    from sklearn.metrics import r2_score

    y = np.asarray(y, dtype=np.float64).reshape(out.shape)
    rmse = float(np.sqrt(np.mean((out - y) ** 2)))
    # scikit-learn's R^2: per output, then averaged (a pooled variance lets one target's offset
    # dominate the score). NaN for a constant target, as before.
    r2 = float(r2_score(y, out.astype(np.float64))) if len(y) > 1 and np.all(np.var(y, axis=0) > 0) else float("nan")
    return {"rmse": rmse, "r2": r2}


def backend_from(recorded: dict | None, override: dict, warn=None):
    """The backend to use: the command line's choice, else what the snapshot recorded.

    What a snapshot records is a stranger's hint: a recorded scheduler address is never
    connected to (a Dask client unpickles what its scheduler sends) unless the user names it
    with --scheduler, and a recorded worker count is capped by this machine's cores."""
    from .parallel import make_backend

    recorded = recorded if isinstance(recorded, dict) else {}
    rec_name = recorded.get("name") if recorded.get("name") in ("local", "processes", "dask", "auto") else "local"
    if recorded.get("scheduler") and not override.get("scheduler") and not override.get("backend"):
        if warn is not None:
            warn(f"the snapshot was trained on the Dask cluster at {printable(recorded['scheduler'])}; "
                 "not connecting to it (pass --scheduler ADDR to use a cluster); training in this process")
        rec_name = "local"
    name = override.get("backend") or (override.get("scheduler") and "dask") or rec_name
    same = name == rec_name
    workers = override.get("workers")
    if workers is None and same:
        rec_workers = recorded.get("workers")
        if isinstance(rec_workers, int) and not isinstance(rec_workers, bool) and rec_workers > 0:
            workers = min(rec_workers, os.cpu_count() or 1)
    return make_backend(name, workers=workers, scheduler=override.get("scheduler"))


def printable(text) -> str:
    """``text`` quoted, with control characters and terminal escapes made visible (for strings
    that come from a file: printed raw, they could drive the user's terminal)."""
    return ascii(str(text)) if not str(text).isprintable() else repr(str(text))


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
    chosen: object = None  # the state that chose the size on held-out data, when this run refit it


def open_run_directory(out: str, echo=None):
    """Create ``out`` if needed and lock it for this process (see :mod:`cascor.snapshot.rundir`)."""
    from .errors import RunDirectoryError
    from .snapshot.rundir import RunLock

    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create run directory {out}: {exc.strerror or exc}") from None
    return RunLock.acquire(out, echo=echo)


def run_directory(engine, out: str, *, data_source: dict, stop_after: int | None, checkpoint_every: int,
                  keep_last: int, callbacks=(), protect=(), counter: int = 0, parent_digest: str = "",
                  backend: dict | None = None, new_run: bool = True, lock=None, refit_data=None) -> RunOutcome:
    """Run to the end (or to ``stop_after``), checkpointing into ``out``; always leaves a snapshot.

    ``out`` must be free (``new_run``) or hold this run already; it is locked for the run
    (pass ``lock`` if the caller took it already, e.g. to choose the resume point).
    ``refit_data``: (X, Y, held-out data or None) as given to the run, for a run with
    ``config.refit``: once it finishes, its chosen network is refit on all of it (trainer.refit)
    in the same directory, so a run stopped before or during the refit refits when resumed."""
    from .snapshot.manager import CheckpointManager, Retention
    from .snapshot.rundir import claim
    from .trainer import refit, refit_pending, run

    own_lock = lock is None
    lock = lock or open_run_directory(out)
    try:
        claim(out, engine.state.run_id, new_run=new_run)
        manager = CheckpointManager(out, every=checkpoint_every, at_install=True,
                                    retention=Retention(keep_last=keep_last), protect=set(protect), backend=backend,
                                    data_source=data_source, counter=counter, parent_digest=parent_digest,
                                    background=True, lock=lock).start()
        # The handler stays installed until the last snapshot is on disk: a second Ctrl-C or
        # SIGTERM while it is written changes nothing, and the run still exits cleanly.
        with StopRequest() as stop:
            try:
                t0 = time.perf_counter()
                every = (*callbacks, manager, stop)
                report = run(engine, stop_at_epoch=stop_after, callbacks=every)
                chosen = None
                asked_to_stop = report.stopped_early or stop.requested
                if refit_data is not None and refit_pending(engine.state) and not asked_to_stop:
                    chosen = engine.state
                    X, Y, held = refit_data
                    engine = refit(chosen, X, Y, engine.backend, validation=held)
                    run(engine, stop_at_epoch=stop_after, callbacks=every)
                seconds = time.perf_counter() - t0 - manager.seconds
                state = engine.state
                # The last snapshot is written synchronously, after every pending background write.
                path = manager.save(state, name="final.h5" if state.done else None, wait=True)
            except BaseException:
                manager.close(quiet=True)  # what was handed over still lands; the first error stands
                raise
            manager.close()
    finally:
        if own_lock:
            lock.release()
    return RunOutcome(engine, path, state.done, seconds, chosen)


def held_out_rows(state, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, held-out rows or None) of the ``n`` patterns a run was given."""
    from .validation import training_rows

    v = state.validation
    if v is None or v.index is None:
        return np.arange(n), None
    return training_rows(v.index, n), v.index


def refit_record(state) -> dict:
    """For a refit run (its held-out rows are training rows now, and not recorded as such): the
    choice it made before, from its score table -- the size, how far it grew, and the best
    held-out score (accuracy or R^2) -- with ``refitted: True``. Empty for any other run."""
    if not state.refitted:
        return {}
    scores = state.history.scores
    seen = [x for x in scores["val_score"] if not math.isnan(x)]
    kind = "accuracy" if state.targets.get("task") == "classification" else "r2"
    return {"refitted": True, "best_hidden_units": state.network.n_hidden,
            "grown_units": max(scores["hidden_units"], default=0), f"validation_{kind}": float(max(seen))}


def summarize(engine, ds: Dataset, train_seconds: float, snapshot: str, validation: Dataset | None = None,
              test: Dataset | None = None, chosen=None) -> dict:
    """The run's figures: counts, and scores on the training rows, the held-out rows (split off
    or ``validation``), and the test data (``test``, else the dataset's own test split).

    A refit run (``config.refit``: its held-out rows became training rows) reports the held-out
    figures of the network that was chosen, before the refit: from ``chosen`` (that state) when
    the refit happened in this process, else from the score table recorded when it was chosen."""
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
    rows, held = held_out_rows(st, len(X))
    summary.update({f"train_{k}": v for k, v in score(net, st.targets, X[rows], np.asarray(ds.y)[rows]).items()})
    judged = chosen if chosen is not None else st
    v = judged.validation
    if v is not None:
        summary["best_hidden_units"] = v.best_n_units
        summary["grown_units"] = max(judged.history.scores["hidden_units"], default=0)
        held = held_out_rows(judged, len(X))[1]
        Xv, yv = (X[held], np.asarray(ds.y)[held]) if held is not None else (validation.X, validation.y)
        summary.update({f"validation_{k}": val for k, val in score(judged.network, st.targets, Xv, yv).items()})
    else:
        summary.update(refit_record(st))
    if chosen is not None:
        summary["refitted"] = True  # "status" is the refit's own end (its unit limit, or solved)
        summary["chosen_status"] = chosen.status  # why growth ended: early_stopped, solved, ...
    if test is not None:
        summary.update({f"test_{k}": val for k, val in score(net, st.targets, test.X, test.y).items()})
    elif ds.X_test is not None:
        summary.update({f"test_{k}": val for k, val in score(net, st.targets, ds.X_test, ds.y_test).items()})
    return summary
