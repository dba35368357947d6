"""The ``cascor`` command line. The only module that prints.

Exit codes: 0 success (for ``snapshot diff``: identical), 1 a cascor error (invalid data,
config or snapshot; for ``diff``: different), 2 usage. User errors print one line, never a
traceback. Torch is imported only by the commands that train or evaluate, so ``snapshot
inspect`` and ``snapshot verify`` start fast.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .errors import CascorError


def _clean(text) -> str:
    """``text`` with every control character (terminal escapes, newlines) shown as an escape:
    whatever a file held reaches the terminal as visible text, on one line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _echo(text, err: bool = False) -> None:
    click.echo(_clean(text), err=err)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CascorError as exc:
            _echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _json_safe(obj):
    """``obj`` as strict JSON allows (non-finite floats as null)."""
    from .service.events import json_safe

    return json_safe(obj)


def _emit(summary: dict, as_json: bool, lines: list[str]) -> None:
    """The result: readable lines on stdout, or with ``--json`` exactly one JSON document on
    stdout (the lines then go to stderr, so ``| jq`` works)."""
    for line in lines:
        _echo(line, err=as_json)
    if as_json:
        click.echo(json.dumps(_json_safe(summary), sort_keys=True))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cascor")
def main():
    """Cascade-Correlation networks with bit-exact, verified HDF5 snapshots."""
    import warnings

    # A warning is one line for the user ("warning: ..."), not a source location and a code line.
    warnings.showwarning = lambda message, category, *args, **kw: _echo(f"warning: {message}", err=True)


def _progress(quiet: bool):
    """A tqdm bar on stderr when stderr is a terminal; otherwise one plain line per unit
    install (a log shows the cascade grow). Nothing with ``--quiet``."""
    if quiet:
        return None
    if not sys.stderr.isatty():
        def log(engine, event):
            if event == "installed":
                st = engine.state
                _echo(f"epoch {st.counters.epoch}: installed unit {st.network.n_hidden} "
                      f"({st.network.units[-1].activation}); error bits {st.counters.error_bits}, "
                      f"true error {st.counters.true_error:.4g}", err=True)
        log.bar = None
        return log
    from tqdm import tqdm

    # miniters=1: refresh by time only. tqdm's default (dynamic miniters) takes the size of the
    # first update as the refresh step: after a resume at epoch 500 the bar froze for 500 epochs.
    bar = tqdm(unit="epoch", leave=False, file=sys.stderr, miniters=1, mininterval=0.1)

    def callback(engine, event):
        st = engine.state
        bar.update(st.counters.epoch - bar.n)
        bar.set_postfix(units=st.network.n_hidden, phase=st.phase.name[:4], bits=st.counters.error_bits, refresh=False)

    callback.bar = bar
    return callback


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _summary_lines(s: dict) -> list[str]:
    state = "solved" if s["solved"] else ("stopped" if not s["finished"] else s.get("chosen_status", s["status"]))
    lines = [
        f"{state}: {s['hidden_units']} hidden units, {s['epochs']} epochs "
        f"({s['output_epochs']} output + {s['candidate_epochs']} candidate), {s['train_seconds']:.3f} s",
    ]
    if "best_hidden_units" in s:
        lines[0] = (f"{state} after growing {s['grown_units']} hidden units, {s['epochs']} epochs, "
                    f"{s['train_seconds']:.3f} s; the network is the best on held-out data: "
                    f"{s['hidden_units']} units" + (", its output layer refit on all the data" if s.get("refitted")
                                                    else ""))
    parts = []
    for part in ("train", "validation", "test"):
        label = f"{part} (before the refit)" if part == "validation" and s.get("refitted") else part
        if f"{part}_accuracy" in s:
            parts.append(f"{label} accuracy {s[f'{part}_accuracy']:.4f}")
        if f"{part}_rmse" in s:
            parts.append(f"{label} RMSE {s[f'{part}_rmse']:.4f}, R^2 {s[f'{part}_r2']:.4f}")
        elif f"{part}_r2" in s:
            parts.append(f"{label} R^2 {s[f'{part}_r2']:.4f}")
    if parts:
        lines.append("; ".join(parts))
    lines.append(f"snapshot: {s['snapshot']}")
    return lines


def _train_options(f):
    for opt in reversed([
        click.option("--stop-after", type=click.IntRange(min=0), default=None,
                     help="Stop at this epoch boundary, save a snapshot, exit 0."),
        click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Snapshot every N epochs (0: only at unit installs and at the end)."),
        click.option("--keep-last", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Keep only the newest N checkpoints (0: keep all)."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--backend", type=click.Choice(["local", "processes", "dask", "auto"]), default=None,
                     help="Where candidate pools train (default: local, or what the snapshot recorded)."),
        click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes."),
        click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
                     help="Torch threads in this process (0: torch's default). One is fastest for most "
                          "Cascade-Correlation problems, which are too small to split."),
        click.option("--scheduler", default=None, metavar="ADDR",
                     help="Dask scheduler address (tcp://host:8786, tls://...); default: an embedded LocalCluster."),
    ]):
        f = opt(f)
    return f


def _tracking_options(f):
    """--log-dir / --log-csv / --mlflow, handed to the command as one ``tracking`` argument."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, log_dir, log_csv, mlflow, mlflow_experiment, events_fd, monitor, monitor_port, **kw):
        return f(*args, tracking={"log_dir": log_dir, "log_csv": log_csv, "mlflow": mlflow,
                                  "mlflow_experiment": mlflow_experiment, "events_fd": events_fd,
                                  "monitor": monitor_port if monitor else None, "out": kw.get("out")}, **kw)

    for opt in reversed([
        click.option("--log-dir", type=click.Path(), default=None,
                     help="Write TensorBoard event files here (error per epoch, scores per unit, candidates' "
                          "best score per round; needs cascor[track]). A resumed run continues its log."),
        click.option("--log-csv", type=click.Path(dir_okay=False), default=None,
                     help="Append one row per epoch to this CSV file (a resumed run continues it)."),
        click.option("--mlflow", is_flag=True,
                     help="Log params, metrics and the final snapshot to MLflow (MLFLOW_TRACKING_URI; needs mlflow)."),
        click.option("--mlflow-experiment", default=None, metavar="NAME",
                     help="MLflow experiment (default: cascor)."),
        click.option("--monitor", is_flag=True,
                     help="Watch this run in the browser: the `cascor serve` page for this run, served by this "
                          "process on 127.0.0.1 (the address with its token is printed; needs cascor[serve])."),
        click.option("--monitor-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
                     help="Port of --monitor (0: any free port)."),
        # `cascor serve` runs every training through this command and reads its history here
        click.option("--events-fd", type=click.IntRange(min=3), default=None, hidden=True,
                     help="Write the run's history as JSON lines to this inherited file descriptor."),
    ]):
        wrapper = opt(wrapper)
    return wrapper


def _loggers(tracking: dict | None) -> list:
    """The loggers the command line asked for, checked before the run starts."""
    from . import tracking as trk

    tracking = tracking or {}
    loggers = []
    if tracking.get("log_dir"):
        loggers.append(trk.TensorBoardLogger(tracking["log_dir"]))
    if tracking.get("log_csv"):
        loggers.append(trk.CSVLogger(tracking["log_csv"]))
    if tracking.get("mlflow"):
        loggers.append(trk.MLflowLogger(tracking.get("mlflow_experiment")))
    if tracking.get("events_fd") is not None:
        from .service.events import EventLogger

        loggers.append(EventLogger(tracking["events_fd"]))
    if tracking.get("monitor") is not None:
        from .service.monitor import Monitor

        loggers.append(Monitor(tracking["out"], port=tracking["monitor"], echo=_note))
    for logger in loggers:
        logger.preflight()
    return loggers


def _validation_options(f):
    for opt in reversed([
        click.option("--validation-fraction", type=click.FloatRange(0.0, 0.9, max_open=False), default=None,
                     help="Hold out this share of the training data (stratified) to choose the network's size; "
                          "the run ends on the best network seen on it. Default: with the default preset, 0.2 "
                          "from 300 rows (classification) or 100 (regression), as the estimators do; otherwise "
                          "none (the paper's behaviour: grow until the training set is solved)."),
        click.option("--validation", "validation_file", type=click.Path(dir_okay=False), default=None,
                     help="Held-out data file (same columns as --data) instead of a split."),
        click.option("--early-stopping/--no-early-stopping", default=None,
                     help="Stop growing when the held-out score stops improving (--early-stopping alone holds "
                          "out 0.2); --no-early-stopping holds nothing out unless asked (the paper's behaviour) "
                          "and, with held-out data, grows to the end and still ends on the best network."),
        click.option("--n-iter-no-change", type=click.IntRange(min=1), default=None,
                     help="Units without a held-out gain of tol before growth stops (default: 5)."),
        click.option("--refit/--no-refit", "refit", default=None,
                     help="Once the size is chosen on held-out data, train the chosen network's output layer once "
                          "more on all the data, held-out rows included (default: on whenever data is held out; "
                          "the summary's validation figures are the chosen network's, before the refit)."),
        click.option("--test", "test_file", type=click.Path(dir_okay=False), default=None,
                     help="Test data file, scored in the summary (never used for training or stopping)."),
    ]):
        f = opt(f)
    return f


def _validation_config(cfg, fraction, validation_file, early, patience, refit=None, explicit=(), auto=None):
    """The config with the command line's held-out-data choices (``explicit``: the keys --set gave).

    ``auto`` (the data's (rows, task), given for the ``default`` preset): without any held-out
    option, hold out a share as the estimators' ``early_stopping='auto'`` does
    (config.AUTO_VALIDATION_SAMPLES), and let a regression grow past ErrorIndex 0.2 while the
    held-out score decides (config.VALIDATED_ERROR_INDEX_THRESHOLD). The paper presets keep the
    paper's behaviour: grow until the training set is solved."""
    from .config import AUTO_VALIDATION_SAMPLES, DEFAULT_VALIDATION_FRACTION, VALIDATED_ERROR_INDEX_THRESHOLD
    from .errors import ConfigError

    if fraction is not None and validation_file is not None:
        raise ConfigError("give --validation-fraction or --validation FILE, not both")
    changes = {}
    if fraction is not None:
        changes["validation_fraction"] = fraction
    elif early and validation_file is None and cfg.validation_fraction == 0:
        changes["validation_fraction"] = DEFAULT_VALIDATION_FRACTION
    elif (early is None and auto is not None and validation_file is None and cfg.validation_fraction == 0
          and "validation_fraction" not in explicit and auto[0] >= AUTO_VALIDATION_SAMPLES[auto[1]]):
        changes["validation_fraction"] = DEFAULT_VALIDATION_FRACTION
    if early is False:
        changes["n_iter_no_change"] = 0
    if patience is not None:
        changes["n_iter_no_change"] = patience
    held = changes.get("validation_fraction", cfg.validation_fraction) > 0 or validation_file is not None
    if held and auto is not None and auto[1] == "regression" and "error_index_threshold" not in explicit:
        changes["error_index_threshold"] = VALIDATED_ERROR_INDEX_THRESHOLD
    if refit and not held:
        raise ConfigError("--refit needs held-out data to choose the size on: give --validation-fraction, "
                          "--validation FILE or --early-stopping")
    if refit is not None:
        changes["refit"] = refit
    elif "refit" not in explicit:
        # The estimators' default (measured: never worse, small gains wherever data is held out;
        # docs/results.md): the chosen network learns from the held-out rows too before it is kept.
        changes["refit"] = held
    return cfg.replace(**changes)


def _extra_data(path, target, ds, what):
    """A held-out or test file, checked against the training data's columns and task (its labels
    are checked when they are encoded with the training data's classes)."""
    from . import workflow
    from .errors import DataError

    if path is None:
        return None
    extra, _ = workflow.load_data(None, path, target)
    if extra.X.shape[1] != ds.X.shape[1] or extra.task != ds.task:
        raise DataError(f"{what} file {workflow.printable(path)}: {extra.X.shape[1]} {extra.task} features; "
                        f"the training data has {ds.X.shape[1]} {ds.task} features")
    return extra


@main.command()
@click.option("--dataset", help="Built-in dataset (two-spirals, xor, parity2..8, spirals, iris, wine, ...).")
@click.option("--data", type=click.Path(dir_okay=False), help="CSV or NPZ file.")
@click.option("--target", default=None, help="CSV target column (name or index; default: last).")
@click.option("--preset", default="default", show_default=True, help="Parameter preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Root seed of every random stream.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--resume", "resume_flag", is_flag=True, help="Continue from OUT/latest.h5 if it exists.")
@click.option("--scale-inputs/--no-scale-inputs", default=None,
              help="Standardise the input columns (mean 0, standard deviation 1 over the rows given to the run, "
                   "kept in the run's snapshots and applied by resume, evaluate, plot, the service and every "
                   "export, which all take the data's own columns). Default: on for --data, off for the "
                   "built-in datasets (prepared already; two-spirals keeps the paper's coordinates).")
@_validation_options
@_train_options
@_tracking_options
def train(dataset, data, target, preset, sets, seed, out, resume_flag, scale_inputs, validation_fraction,
          validation_file, early_stopping, n_iter_no_change, refit, test_file, stop_after, checkpoint_every, keep_last,
          as_json, quiet, backend, workers, threads, scheduler, tracking):
    """Train a network; writes OUT/final.h5 (and checkpoints, OUT/latest.h5)."""
    from . import config as cfgmod
    from . import workflow

    _set_threads(threads)
    loggers = _loggers(tracking)
    parallel = {"backend": backend, "workers": workers, "scheduler": scheduler}
    with workflow.open_run_directory(out, echo=_note) as lock:
        if resume_flag:
            from .snapshot.rundir import resume_point

            point, passed_over = resume_point(out)
            for reason in passed_over:
                _note(f"warning: passing over {reason}")
            if point is not None:
                if passed_over:
                    _note(f"resuming from {point}")
                _resume(point, out, dataset, data, target, stop_after, checkpoint_every, keep_last, as_json, quiet,
                        parallel, lock=lock, validation_file=validation_file, test_file=test_file, loggers=loggers)
                return
        from .snapshot.rundir import refuse_other

        refuse_other(out)  # before loading data; the run claims the directory when it starts
        ds, source = workflow.load_data(dataset, data, target)
        from .trainer import start  # torch: only once the data loaded (a data mistake fails fast)

        cfg = cfgmod.preset(preset).with_overrides(sets)
        if seed is not None:
            cfg = cfg.replace(seed=seed)
        explicit = {s.partition("=")[0].strip().replace("-", "_") for s in sets}
        cfg = workflow.adapt_config(cfg, ds, explicit, recommended=preset == "default")
        cfg = _validation_config(cfg, validation_fraction, validation_file, early_stopping, n_iter_no_change,
                                 refit, explicit, auto=(len(ds.X), ds.task) if preset == "default" else None)
        val_ds = _extra_data(validation_file, target, ds, "validation")
        test_ds = _extra_data(test_file, target, ds, "test")
        scaling = None
        if scale_inputs or (scale_inputs is None and data is not None):
            from .inputs import InputScaling

            scaling = InputScaling.fit(ds.X)
            ds, val_ds, test_ds = (None if d is None else workflow.scaled(d, scaling) for d in (ds, val_ds, test_ds))
        X, Y, info = workflow.targets_for(ds, cfg)
        held = None
        if val_ds is not None:
            held = workflow.targets_for(ds, cfg, X=val_ds.X, y=val_ds.y)[:2]
        chosen = workflow.backend_from({"name": "local"}, parallel)
        engine = start(cfg, X, Y, backend=chosen, targets=info, validation=held, input_scaling=scaling)
        if scaling is None and data is not None and (warning := workflow.scale_warning(ds, workflow.printable(data))):
            _note(warning)  # (once the run is set up: a user error before it stays one line)
        _run(engine, ds, source, out, stop_after, checkpoint_every, keep_last, as_json, quiet, lock=lock,
             extra=(val_ds, test_ds), loggers=loggers, refit_data=(X, Y, held))


def _note(message: str) -> None:
    """A line for the user on stderr (stdout stays for results)."""
    _echo(message, err=True)


def _run(engine, ds, source, out, stop_after, checkpoint_every, keep_last, as_json, quiet, extra=(None, None),
         loggers=(), **kw):
    from . import workflow

    progress = _progress(quiet)
    status = "FAILED"
    final = engine  # a refit continues in a new engine (trainer.refit)
    try:
        outcome = workflow.run_directory(engine, out, data_source=source, stop_after=stop_after,
                                         checkpoint_every=checkpoint_every, keep_last=keep_last,
                                         callbacks=((progress,) if progress else ()) + tuple(loggers),
                                         backend=engine.backend.settings(), **kw)
        final = outcome.engine
        status = "FINISHED" if outcome.finished else "KILLED"
        for logger in loggers:
            if hasattr(logger, "log_artifact"):
                logger.log_artifact(outcome.snapshot)
    finally:
        engine.backend.close()
        if progress and progress.bar is not None:
            progress.bar.close()
        for logger in loggers:
            logger.finish(final.state, status)
    summary = workflow.summarize(final, ds, outcome.train_seconds, outcome.snapshot, *extra, chosen=outcome.chosen)
    _emit(summary, as_json, [] if as_json and quiet else _summary_lines(summary))


def _recorded_data(loaded, dataset, data, target):
    """The data to use with ``loaded``: the command line's, else the snapshot's recorded source
    (a recorded file only for a snapshot in its own run directory)."""
    from . import workflow

    if dataset or data:
        return workflow.load_data(dataset, data, target)
    where = workflow.printable(loaded.path)
    trusted = workflow.source_trusted(loaded.path, loaded.state.run_id)
    return workflow.load_source(loaded.data_source, trusted=trusted, where=where), loaded.data_source


def _resume(snapshot, out, dataset, data, target, stop_after, checkpoint_every, keep_last, as_json, quiet, parallel,
            lock=None, validation_file=None, test_file=None, loggers=(), max_units=None):
    from . import snapshot as snap
    from . import workflow
    from .trainer import resume as resume_engine

    own_lock = lock is None
    lock = lock or workflow.open_run_directory(out, echo=_note)
    try:
        loaded = snap.load(snapshot)
        differences = loaded.version_differences()
        if differences:
            _note(f"warning: {workflow.printable(snapshot)} was written with other versions ({', '.join(differences)}); "
                  "the continuation may differ from the one the original setup would compute")
        ds, source = _recorded_data(loaded, dataset, data, target)
        scaling = loaded.state.input_scaling
        ds = workflow.scaled(ds, scaling)
        X, Y, _ = workflow.targets_for(ds, loaded.state.config)
        v = loaded.state.validation
        if v is not None and v.index is None and validation_file is None:
            from .errors import DataError

            raise DataError(f"{workflow.printable(snapshot)} validates on a separate held-out file: pass it again "
                            "with --validation FILE")
        val_ds = workflow.scaled(_extra_data(validation_file, target, ds, "validation"), scaling)
        test_ds = workflow.scaled(_extra_data(test_file, target, ds, "test"), scaling)
        held = None if val_ds is None else workflow.targets_for(ds, loaded.state.config, X=val_ds.X, y=val_ds.y)[:2]
        state = loaded.state
        if max_units is not None and max_units != state.config.max_units:
            from .trainer import extend

            state = extend(state, max_units)
        engine = resume_engine(state, X, Y, backend=workflow.backend_from(loaded.backend, parallel, warn=_note),
                               validation=held)
        _run(engine, ds, source, out, stop_after, checkpoint_every, keep_last, as_json, quiet,
             extra=(val_ds, test_ds),
             protect={os.path.realpath(snapshot)}, counter=loaded.counter, parent_digest=loaded.content_digest,
             new_run=False, lock=lock, loggers=loggers, refit_data=(X, Y, held))
    finally:
        if own_lock:
            lock.release()


@main.command()
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory for the continuation.")
@click.option("--dataset", help="Override the recorded dataset.")
@click.option("--data", type=click.Path(dir_okay=False), help="Override the recorded data file.")
@click.option("--target", default=None, help="CSV target column of --data (name or index; default: last).")
@click.option("--validation", "validation_file", type=click.Path(dir_okay=False), default=None,
              help="The held-out data file the run was started with (a run that split its data needs none).")
@click.option("--test", "test_file", type=click.Path(dir_okay=False), default=None,
              help="Test data file, scored in the summary.")
@click.option("--max-units", type=click.IntRange(min=0), default=None,
              help="Room for more units: a run that stopped at its unit limit grows on (only larger limits).")
@_train_options
@_tracking_options
def resume(snapshot, out, dataset, data, target, validation_file, test_file, max_units, stop_after, checkpoint_every,
           keep_last, as_json, quiet, backend, workers, threads, scheduler, tracking):
    """Continue a run from SNAPSHOT exactly where it stopped (on the backend it recorded, or --backend)."""
    _set_threads(threads)
    _resume(snapshot, out, dataset, data, target, stop_after, checkpoint_every, keep_last, as_json, quiet,
            {"backend": backend, "workers": workers, "scheduler": scheduler}, validation_file=validation_file,
            test_file=test_file, loggers=_loggers(tracking), max_units=max_units)


@main.command()
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--dataset", help="Score on this built-in dataset instead of the recorded training data.")
@click.option("--data", type=click.Path(dir_okay=False), help="Score on this CSV or NPZ file instead.")
@click.option("--target", default=None, help="CSV target column of --data (name or index; default: last).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
def evaluate(snapshot, dataset, data, target, as_json):
    """Score the network in SNAPSHOT: on its recorded training data (training and held-out rows),
    or on --dataset/--data (unprefixed scores); and on the dataset's test split if it has one."""
    import numpy as np

    from . import snapshot as snap
    from . import workflow

    loaded = snap.load(snapshot)
    st = loaded.state
    ds, _ = _recorded_data(loaded, dataset, data, target)
    if ds.X.shape[1] != st.network.n_inputs:
        from .errors import DataError

        raise DataError(f"the network has {st.network.n_inputs} inputs but the data has {ds.X.shape[1]} features")
    ds = workflow.scaled(ds, st.input_scaling)
    result = {"hidden_units": st.network.n_hidden, "status": st.status}
    if dataset or data:
        # Data named on the command line: what it is (training, test, new) is the user's to say.
        result.update(workflow.score(st.network, st.targets, ds.X, ds.y))
    else:
        rows, held = workflow.held_out_rows(st, len(ds.X))
        y = np.asarray(ds.y)
        result.update({f"train_{k}": v for k, v in workflow.score(st.network, st.targets, ds.X[rows], y[rows]).items()})
        if held is not None:
            result.update({f"validation_{k}": v for k, v in
                           workflow.score(st.network, st.targets, ds.X[held], y[held]).items()})
        else:
            # A refit network trained on its held-out rows too: its held-out figure is the one
            # recorded when its size was chosen (before the refit), marked by refitted: true.
            record = workflow.refit_record(st)
            result.update({k: v for k, v in record.items() if k.startswith(("validation_", "refit"))})
    if ds.X_test is not None:
        result.update({f"test_{k}": v for k, v in workflow.score(st.network, st.targets, ds.X_test, ds.y_test).items()})
    lines = [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()]
    _emit(result, as_json, [] if as_json else lines)


@main.command()
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--kind", type=click.Choice(["boundary", "history", "network"]), default="boundary", show_default=True,
              help="boundary: the output over a 2-D input plane; history: learning curve and scores by size; "
                   "network: the connection matrix.")
def plot(snapshot, out, kind):
    """Draw the decision boundary, the learning curve, or the cascade."""
    from . import snapshot as snap

    loaded = snap.load(snapshot)
    _plot(loaded.state, kind, out, lambda: _recorded_data(loaded, None, None, None)[0])
    click.echo(out)


def _plot(state, kind, out, dataset_fn):
    from . import plotting
    from .errors import DataError

    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise CascorError(f"cannot write {out}: folder {folder} does not exist")

    if kind == "history":
        plotting.plot_history(state.history.to_dict(), out,
                              chosen_units=state.network.n_hidden if state.validation is not None else None)
    elif kind == "network":
        plotting.plot_network(state.network, out)
    else:
        if state.network.n_inputs != 2:
            raise DataError(f"a decision boundary needs a 2-input network; this one has {state.network.n_inputs}")
        ds = dataset_fn()
        if ds.X.shape[1] != 2:
            raise DataError(f"a decision boundary needs 2 input features; this data has {ds.X.shape[1]}")
        plotting.plot_boundary(state.network, ds.X, ds.y, out, inputs=state.input_scaling)


@main.command("export")
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "numpy", "c"]), default="onnx", show_default=True,
              help="onnx: one ONNX graph; numpy: an .npz for cascor.inference (no torch); c: a C99 .c/.h pair.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="File to write (for c: the .c file; its .h is written beside it).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None,
              help="Arithmetic. onnx: float64 (default; equal to the estimators) or float32 (what accelerators "
                   "run); c: float32 (default) or float64 (double unless compiled with -DCASCOR_FLOAT).")
@click.option("--c-prefix", default="", help="C names: PREFIXpredict and PREFIX_N_INPUTS, to link several models.")
@click.option("--no-check", is_flag=True, help="Write without running the export against the model first.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
def export_cmd(snapshot, fmt, out, dtype, c_prefix, no_check, as_json):
    """Export the network in SNAPSHOT (the best on held-out data, for a run that has some) to
    ONNX, a NumPy-only .npz or C; the export is run and compared with cascor's own float64
    forward pass before it is written."""
    from . import snapshot as snap
    from .exporters import export

    report = export(snap.load(snapshot).state, out, format=fmt, dtype=dtype, prefix=c_prefix, check=not no_check)
    lines = [f"{', '.join(report['paths'])}: {report['hidden_units']} hidden units, {report['inputs']} inputs, "
             f"{report['outputs']} outputs ({report['task']})"]
    check = report.get("check", {})
    if "max_abs_diff" in check:
        agree = f", labels agree on {check['label_agreement']:.1%}" if "label_agreement" in check else ""
        lines.append(f"checked with {check['checked_with']} on {check['checked_rows']} rows: largest difference "
                     f"{check['max_abs_diff']:.2g} from cascor's float64 outputs{agree}")
    elif "skipped" in check:
        lines.append(f"not checked: {check['skipped']}")
    _emit(report, as_json, lines)


@main.command()
@click.option("--out", default="demo-output", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's runs and plots (its own earlier runs there are replaced).")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Root seed of the runs.")
@click.option("--preset", default="fahlman-spirals", show_default=True, help="Parameter preset of the runs.")
def demo(out, seed, preset):
    """Two-spirals end to end: train, stop part-way, resume in a fresh process, compare, plot."""
    from .demo import run_demo

    ok = run_demo(out, seed, preset, echo=click.echo)
    if not ok:
        raise SystemExit(1)


@main.command()
@click.option("--runs", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Runs directory: one `cascor train --out` directory per run (created if missing).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free port; the address is printed).")
@click.option("--token", default=None, help="Access token (default: a random one, printed with the address).")
@click.option("--no-token", is_flag=True, help="No token (refused unless --host is a loopback address).")
@click.option("--max-runs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Runs training at once; more wait in a queue.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=64, show_default=True,
              help="Largest upload (training data, a snapshot) in MB.")
def serve(runs, host, port, token, no_token, max_runs, max_upload_mb):
    """Serve a web page and a JSON/WebSocket API to start, watch, pause, resume, branch and
    download runs (needs cascor[serve]). Every run trains in its own `cascor train` process."""
    import ipaddress
    import secrets

    from .errors import ConfigError
    from .service import missing_packages

    missing = missing_packages()
    if missing:
        raise ConfigError(f"cascor serve needs {', '.join(missing)}: pip install 'cascor[serve]'")
    if no_token and token:
        raise ConfigError("give --token or --no-token, not both")
    if no_token:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"--no-token on {host}: anyone who can reach that address could start runs and "
                              "download every snapshot; a non-loopback address needs a token")
    elif token is None:
        token = secrets.token_urlsafe(24)
    elif len(token) < 16:
        raise ConfigError("--token must be at least 16 characters")
    from .service.app import serve as run_server

    run_server(runs, host, port, None if no_token else token, max_runs, int(max_upload_mb * (1 << 20)),
               echo=lambda line: _echo(line, err=True))


@main.command("config")
@click.option("--preset", default="default", show_default=True, help="Preset whose values to show.")
@click.option("--presets", "list_presets", is_flag=True, help="List the presets and how each differs from cascor1c.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def config_cmd(preset, list_presets, as_json):
    """Every config field (set one with --set KEY=VALUE) with its value, type and meaning."""
    from . import config as cfgmod

    if list_presets:
        base = cfgmod.CascorConfig().to_dict()
        rows = {name: {k: v for k, v in cfg.to_dict().items() if v != base[k]} for name, cfg in cfgmod.PRESETS.items()}
        if as_json:
            click.echo(json.dumps(rows, sort_keys=True))
            return
        for name, changes in rows.items():
            _echo(f"{name}: " + (", ".join(f"{k}={v}" for k, v in changes.items()) or "cascor1.c defaults"))
        return
    rows = cfgmod.describe(preset)
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    for r in rows:
        value = ",".join(map(str, r["value"])) if isinstance(r["value"], list) else r["value"]
        _echo(f"{r['field']:24} {str(value):34} {r['type']:16} {r['help']}")


@main.group(cls=_Group)
def snapshot():
    """Inspect, verify, compare, upgrade and prune snapshot files."""


def _fail(msg: str, as_json: bool, path: str) -> None:
    if as_json:
        click.echo(json.dumps({"path": path, "valid": False, "error": msg}))
    else:
        _echo(f"INVALID {path}: {msg}", err=True)
    raise SystemExit(1)


@snapshot.command("inspect")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def snapshot_inspect(path, as_json):
    """Summarise a snapshot from its metadata (does not import torch)."""
    from .snapshot import inspect as inspect_snapshot
    from .errors import SnapshotError

    try:
        info = inspect_snapshot(path)
    except SnapshotError as exc:
        _fail(str(exc), as_json, path)
    if as_json:
        click.echo(json.dumps(_json_safe(info), sort_keys=True))
        return
    for key, value in info.items():
        if key != "config":
            _echo(f"{key:18} {value}")
    click.echo("config             " + json.dumps(info["config"], sort_keys=True))


@snapshot.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def snapshot_verify(paths, as_json):
    """Check every digest, the structure and the shapes (does not import torch)."""
    from .snapshot import verify as verify_snapshot
    from .errors import SnapshotError

    bad = 0
    for path in paths:
        try:
            raw = verify_snapshot(path)
            result = {"path": path, "valid": True, "content_digest": raw.attrs["content_digest"]}
        except SnapshotError as exc:
            bad += 1
            result = {"path": path, "valid": False, "error": str(exc)}
        if as_json:
            click.echo(json.dumps(result, sort_keys=True))
        elif result["valid"]:
            _echo(f"OK {path} {result['content_digest']}")
        else:
            _echo(f"INVALID {path}: {result['error']}", err=True)
    raise SystemExit(1 if bad else 0)


@snapshot.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def snapshot_diff(a, b, as_json):
    """Compare two snapshots by content; exit 0 if identical, 1 if different."""
    from .snapshot.diff import diff_snapshots

    report = diff_snapshots(a, b)
    if as_json:
        click.echo(json.dumps(_json_safe(report), sort_keys=True))
    else:
        for line in report["lines"]:
            _echo(line)
    raise SystemExit(0 if report["identical"] else 1)


@snapshot.command("upgrade")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write here instead of in place.")
def snapshot_upgrade(path, out):
    """Rewrite a snapshot in the current format version (atomically)."""
    from .snapshot import upgrade

    version = upgrade(path, out or path)
    click.echo(f"{out or path}: format {version}")


@snapshot.command("list")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def snapshot_list(directory, as_json):
    """List a run directory's snapshots with epoch, units and digest (torch-free)."""
    from .snapshot import inspect as inspect_snapshot
    from .errors import SnapshotError

    rows = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".h5"):
            continue
        path = os.path.join(directory, name)
        try:
            info = inspect_snapshot(path)
            rows.append({"name": name, "valid": True, "epoch": info["epoch"], "hidden_units": info["hidden_units"],
                         "phase": info["phase"], "status": info["status"], "content_digest": info["content_digest"],
                         "link": os.readlink(path) if os.path.islink(path) else None})
        except SnapshotError as exc:
            rows.append({"name": name, "valid": False, "error": str(exc)})
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    for r in rows:
        if r["valid"]:
            link = f" -> {r['link']}" if r["link"] else ""
            _echo(f"{r['name']:22} epoch {r['epoch']:>6}  units {r['hidden_units']:>3}  {r['phase']:10} "
                  f"{r['status']:9} {r['content_digest'][:16]}{link}")
        else:
            _echo(f"{r['name']:22} INVALID: {r['error']}")


@snapshot.command("prune")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--keep-last", type=click.IntRange(min=0), default=0, show_default=True,
              help="Keep the newest N checkpoints of each run (0: no limit).")
@click.option("--keep-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also keep every checkpoint whose epoch is a multiple of N (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def snapshot_prune(directory, keep_last, keep_every, as_json):
    """Delete checkpoints outside the retention rule, run by run (never a run's newest, nor the
    one latest.h5 names; files that do not verify are left alone)."""
    from .snapshot.manager import Retention, list_checkpoints, run_of, select_keep
    from .snapshot.rundir import RunLock

    directory = os.path.realpath(directory)
    with RunLock.acquire(directory, wait_for_helper=0.0):
        link = os.path.join(directory, "latest.h5")
        protect = {os.path.realpath(link)} if os.path.islink(link) else set()
        runs: dict[str, list] = {}
        unverified = []
        for info in list_checkpoints(directory):
            run_id = run_of(info.path)
            if run_id is None:
                unverified.append(info.path)
            else:
                runs.setdefault(run_id, []).append(info)
        rule = Retention(keep_last=keep_last, keep_every=keep_every)
        keep, removed = set(unverified), []
        for infos in runs.values():
            kept = select_keep(infos, rule, protect)
            keep |= kept
            removed += [i.path for i in infos if i.path not in kept]
        for p in removed:
            try:
                os.remove(p)
            except FileNotFoundError:
                pass
    if as_json:
        click.echo(json.dumps({"removed": removed, "kept": sorted(keep), "unverified": unverified}))
    else:
        for p in removed:
            _echo(f"removed {p}")
        for p in unverified:
            _echo(f"left alone (does not verify): {p}")


if __name__ == "__main__":  # pragma: no cover
    main()
