"""Follow a run in the tools people compare experiments with: TensorBoard event files, a CSV
table, MLflow. Each logger is a trainer callback (``run(engine, callbacks=[logger])``, or
``cascor train --log-dir DIR --log-csv FILE --mlflow``).

Loggers read the run's :class:`~cascor.history.History` (the record the snapshot keeps), never
the engine's internals, so what they write is what the history holds: per epoch the output
phase's error (sum of squared errors) and wrong bits, or the candidates' best score; per output
phase end the network's training and held-out loss and score; per install the unit's score and
activation. Rows are passed on in batches (at every unit install and phase end, and at most
``flush_seconds`` apart), so a run doing thousands of epochs a second pays for a length check per
epoch, not a write.

A resumed run continues its logs without repeating them: the CSV skips the epochs it already
holds, and TensorBoard purges the steps after the resume point (a crash may have logged epochs
the snapshot does not have; a bit-exact resume computes them again). Every step is the run's
epoch count, so all curves share one x-axis. Nothing here affects training: a logger holds no
random state and the run is bit-identical with or without it.

With :func:`cascor.trainer.run`, call ``logger.finish(engine.state)`` when the run returns (the
CLI and the estimators' ``fit(..., callbacks=[...])`` do it).
"""

from __future__ import annotations

import csv
import math
import os
import time

import numpy as np

from .errors import CascorError
from .history import PHASE_OUTPUT, SCORE_KEYS



class TrackingError(CascorError):
    """A log cannot be written, or an existing log is not this kind of table."""


class HistoryLogger:
    """The callback part every logger shares: find the history rows that are new since the last
    call and hand them to :meth:`write` in batches. Subclasses implement ``open`` / ``write`` /
    ``close``; ``open`` is called on the first step (so a logger can be built before the run,
    copied, and pickled)."""

    def __init__(self, flush_seconds: float = 1.0):
        self.flush_seconds = flush_seconds
        self._cursor = None  # (epoch rows, unit rows, score rows) already handed on
        self._held = -1  # the sink already holds this run's epochs up to here
        self._last_flush = 0.0
        self._t0 = None
        self._state = None

    # -- callback --------------------------------------------------------------------------
    def __call__(self, engine, event) -> None:
        state = engine.state
        if self._cursor is None:
            self._t0 = time.perf_counter()
            self._state = state
            self._held = self.open(state)
            self._cursor = rows_through(state.history, self._held)
            self._flush(state)
            return None
        h = state.history
        pending = len(h) > self._cursor[0]
        if pending and (event not in ("output", "candidates") or len(h.scores["epoch"]) > self._cursor[2]
                        or time.perf_counter() - self._last_flush >= self.flush_seconds):
            self._flush(state)
        return None

    def finish(self, state=None, status: str = "FINISHED") -> None:
        """Write what is pending and close (the CLI calls it when the run ends, stops or fails;
        ``status`` is FINISHED, KILLED or FAILED)."""
        state = state or self._state
        try:
            if self._cursor is not None and state is not None:
                self._flush(state)
        finally:
            self.close(status)
            self._cursor = self._state = None  # used again (a warm start), it reopens and continues

    def _flush(self, state) -> None:
        h = state.history
        e0, u0, s0 = self._cursor
        e1, u1, s1 = len(h), len(h.units["epoch"]), len(h.scores["epoch"])
        if self._held >= 0:  # rows the sink holds already (a resume from before its end)
            e0, u0, s0 = (max(a, b) for a, b in zip((e0, u0, s0), rows_through(h, self._held)))
            if len(h) and h.epochs["epoch"][-1] > self._held:
                self._held = -1  # past what the sink held: from here on every row is new
        if (e1, u1, s1) != (e0, u0, s0) and e1 >= e0:
            epochs = {k: list(v[e0:e1]) for k, v in h.epochs.items()}
            units = {k: v[u0:u1] for k, v in h.units.items()}
            scores = {k: v[s0:s1] for k, v in h.scores.items()}
            self.write(state, epochs, units, scores, time.perf_counter() - self._t0)
        e1, u1, s1 = max(e0, e1), max(u0, u1), max(s0, s1)
        self._cursor = (e1, u1, s1)
        self._last_flush = time.perf_counter()

    # -- for subclasses ------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail now, before a run starts, on what would fail at the first step (a missing
        package, a missing folder, a file that is not a log of this kind)."""

    def open(self, state) -> int:
        """Prepare the sink; return the last epoch of this run it already holds (-1: none).
        Rows up to that epoch are not handed on: a bit-exact resume computes them again."""
        return -1

    def write(self, state, epochs: dict, units: dict, scores: dict, seconds: float) -> None:
        raise NotImplementedError

    def close(self, status: str = "FINISHED") -> None:
        pass


def rows_through(history, epoch: int) -> tuple[int, int, int]:
    """The cursor (epoch rows, unit rows, score rows) of everything up to and including ``epoch``."""
    if epoch < 0:
        return (0, 0, 0)

    def count(column):
        return int(np.searchsorted(np.asarray(column), epoch, side="right"))

    return count(history.epochs["epoch"]), count(history.units["epoch"]), count(history.scores["epoch"])


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


class TensorBoardLogger(HistoryLogger):
    """TensorBoard event files through ``torch.utils.tensorboard.SummaryWriter`` (needs the
    ``tensorboard`` package: ``pip install 'cascor[track]'``).

    Scalars, all with the epoch count as the step:

    - ``train/error``, ``train/error_bits``: every output epoch (sum of squared errors, wrong bits)
    - ``candidates/best_score``: every candidate epoch
    - ``train/loss``, ``train/score``, ``validation/loss``, ``validation/score``, ``units/hidden``,
      ``time/seconds``: every output phase end (the network as it stood; held-out values when
      the run has held-out data)
    - ``units/score``: every install (the installed candidate's score), with its activation as
      text under ``units/activation``
    """

    def __init__(self, log_dir: str, flush_seconds: float = 1.0):
        super().__init__(flush_seconds)
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def preflight(self):
        try:
            # (the slow part, ~0.2 s: done before a CLI run starts its clock)
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise TrackingError("--log-dir needs the tensorboard package: pip install 'cascor[track]'") from None
        if os.path.exists(self.log_dir) and not os.path.isdir(self.log_dir):
            raise TrackingError(f"log dir {self.log_dir}: exists and is not a folder")

    def open(self, state):
        self.preflight()
        from torch.utils.tensorboard import SummaryWriter

        earlier = os.path.isdir(self.log_dir) and any(n.startswith("events.out.tfevents.")
                                                      for n in os.listdir(self.log_dir))
        epoch = state.counters.epoch
        try:
            if earlier:
                # this run's earlier part is there: hide anything it logged after the resume point
                self._writer = SummaryWriter(self.log_dir, purge_step=epoch + 1)
            else:
                self._writer = SummaryWriter(self.log_dir)
        except OSError as exc:
            raise TrackingError(f"log dir {self.log_dir}: cannot write ({exc.strerror or exc})") from None
        if earlier:
            return epoch
        self._writer.add_text("run/config", _config_table(state), 0)
        return -1

    def write(self, state, epochs, units, scores, seconds):
        w = self._writer
        for epoch, phase, err, bits, best in zip(epochs["epoch"], epochs["phase"], epochs["true_error"],
                                                 epochs["error_bits"], epochs["best_score"]):
            if phase == PHASE_OUTPUT:
                w.add_scalar("train/error", err, epoch)
                w.add_scalar("train/error_bits", bits, epoch)
            elif _finite(best):
                w.add_scalar("candidates/best_score", best, epoch)
        for epoch, hidden, tl, ts, vl, vs in zip(*(scores[k] for k in SCORE_KEYS)):
            w.add_scalar("units/hidden", hidden, epoch)
            w.add_scalar("train/loss", tl, epoch)
            w.add_scalar("train/score", ts, epoch)
            if _finite(vl):
                w.add_scalar("validation/loss", vl, epoch)
                w.add_scalar("validation/score", vs, epoch)
            w.add_scalar("time/seconds", seconds, epoch)
        for epoch, score, act, steep in zip(units["epoch"], units["score"], units["activation"], units["steepness"]):
            w.add_scalar("units/score", score, epoch)
            w.add_text("units/activation", f"{act} (steepness {steep:g})", epoch)
        w.flush()

    def close(self, status="FINISHED"):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _config_table(state) -> str:
    rows = [f"| {k} | {v} |" for k, v in sorted(state.config.to_dict().items())]
    return "\n".join(["| field | value |", "|---|---|", *rows, "", f"run_id: {state.run_id}"])


CSV_COLUMNS = ("run_id", "epoch", "phase", "hidden_units", "true_error", "error_bits", "best_score",
               "train_loss", "train_score", "val_loss", "val_score", "installed_activation", "installed_score",
               "seconds")


class CSVLogger(HistoryLogger):
    """One row per epoch: ``CSV_COLUMNS``. ``phase`` is ``output`` or ``candidates``; the score
    columns are filled on the epoch an output phase ended, the ``installed_*`` columns on the epoch
    a unit was installed, and empty elsewhere (``true_error`` / ``error_bits`` in candidate epochs,
    ``best_score`` in output epochs). ``seconds`` is wall time since this process began logging.

    An existing file is continued: it must have this header, and epochs it already holds for
    this run are not written again (a resumed run appends from where the log ends)."""

    def __init__(self, path: str, flush_seconds: float = 1.0):
        super().__init__(flush_seconds)
        self.path = os.fspath(path)
        self._file = None
        self._csv = None

    def preflight(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise TrackingError(f"{self.path}: the folder {folder} does not exist")
        if os.path.isdir(self.path):
            raise TrackingError(f"{self.path}: is a folder; --log-csv names a file")
        if os.path.exists(self.path) and os.path.getsize(self.path):
            self._last_epoch("")  # the header is checked

    def open(self, state):
        self.preflight()
        last = -1
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if not fresh:
            last = self._last_epoch(state.run_id)
        try:
            self._file = open(self.path, "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise TrackingError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self._csv = csv.writer(self._file)
        if fresh:
            self._csv.writerow(CSV_COLUMNS)
        return last

    def _last_epoch(self, run_id: str) -> int:
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None or tuple(header) != CSV_COLUMNS:
                    found = "no header" if header is None else ",".join(header)[:120]
                    raise TrackingError(f"{self.path}: not a cascor log (expected the header "
                                        f"{','.join(CSV_COLUMNS[:4])},..., found {found})")
                last = -1
                for row in reader:
                    if row and row[0] == run_id:
                        last = max(last, int(row[1]))
                return last
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise TrackingError(f"{self.path}: cannot read the existing log ({exc})") from None

    def write(self, state, epochs, units, scores, seconds):
        by_epoch_scores = {e: i for i, e in enumerate(scores["epoch"])}
        by_epoch_units = {e: i for i, e in enumerate(units["epoch"])}
        run_id = state.run_id
        rows = []
        for epoch, phase, hidden, err, bits, best in zip(*(epochs[k] for k in ("epoch", "phase", "hidden_units",
                                                                               "true_error", "error_bits",
                                                                               "best_score"))):
            out = phase == PHASE_OUTPUT
            row = [run_id, epoch, "output" if out else "candidates", hidden, _num(err) if out else "",
                   bits if out else "", "" if out else _num(best)]
            i = by_epoch_scores.get(epoch)
            row += ([_num(scores[k][i]) for k in ("train_loss", "train_score", "val_loss", "val_score")]
                    if i is not None else ["", "", "", ""])
            j = by_epoch_units.get(epoch)
            row += [units["activation"][j], _num(units["score"][j])] if j is not None else ["", ""]
            row.append(f"{seconds:.3f}")
            rows.append(row)
        self._csv.writerows(rows)
        self._file.flush()

    def close(self, status="FINISHED"):
        if self._file is not None:
            self._file.close()
            self._file = None


def _num(x) -> str:
    return "" if not _finite(x) else repr(float(x))


class MLflowLogger(HistoryLogger):
    """An MLflow run (needs ``mlflow`` or ``mlflow-skinny``; the tracking URI is MLflow's own
    setting, ``MLFLOW_TRACKING_URI``): the config as params, the TensorBoard scalars as metrics
    (same names, with ``/`` as ``_``; step = epoch), and with :meth:`log_artifact` the final
    snapshot. Metrics go in batches (one ``log_batch`` per flush)."""

    def __init__(self, experiment: str | None = None, run_name: str | None = None, flush_seconds: float = 5.0):
        super().__init__(flush_seconds)
        self.experiment = experiment
        self.run_name = run_name
        self._client = None
        self.run_id = None

    def preflight(self):
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise TrackingError("--mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None

    def open(self, state):
        self.preflight()
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            self._client = client = MlflowClient()
            name = self.experiment or "cascor"
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
            run = client.create_run(exp_id, run_name=self.run_name or state.run_id,
                                    tags={"cascor.run_id": state.run_id})
        except MlflowException as exc:
            raise TrackingError(f"MLflow: {str(exc).splitlines()[0]}") from None
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in sorted(state.config.to_dict().items())]
        for i in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[i:i + 100])
        return -1

    def write(self, state, epochs, units, scores, seconds):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []

        def m(key, value, step):
            if _finite(value):
                metrics.append(Metric(key, float(value), now, int(step)))

        for epoch, phase, err, bits, best in zip(epochs["epoch"], epochs["phase"], epochs["true_error"],
                                                 epochs["error_bits"], epochs["best_score"]):
            if phase == PHASE_OUTPUT:
                m("train_error", err, epoch)
                m("train_error_bits", bits, epoch)
            else:
                m("candidates_best_score", best, epoch)
        for epoch, hidden, tl, ts, vl, vs in zip(*(scores[k] for k in SCORE_KEYS)):
            m("units_hidden", hidden, epoch)
            m("train_loss", tl, epoch)
            m("train_score", ts, epoch)
            m("validation_loss", vl, epoch)
            m("validation_score", vs, epoch)
            m("time_seconds", seconds, epoch)
        for epoch, score in zip(units["epoch"], units["score"]):
            m("units_score", score, epoch)
        for i in range(0, len(metrics), 1000):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_artifact(self, path: str) -> None:
        """Attach a file (the final snapshot) to the MLflow run."""
        if self._client is not None:
            self._client.log_artifact(self.run_id, path)

    def close(self, status: str = "FINISHED"):
        if self._client is not None:
            self._client.set_terminated(self.run_id, status)
            self._client = None
