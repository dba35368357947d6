"""Tracking: TensorBoard event files read back with tensorboard's own reader, the CSV table,
MLflow's file store; runs through the real command line, stopped and resumed."""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from cascor.history import PHASE_OUTPUT
from cascor.snapshot import load
from cascor.tracking import CSV_COLUMNS, CSVLogger

pytest.importorskip("tensorboard", reason="the track extra: pip install 'cascor[track]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    got = acc.Scalars(tag)
    return [e.step for e in got], np.array([e.value for e in got])


def history(path):
    return load(str(path)).state.history


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    return rows[1:]


TRAIN = ("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1", "--quiet")


def test_tensorboard_and_csv_hold_the_history_and_do_not_change_the_run(tmp_path):
    ok(cli(*TRAIN, "--out", str(tmp_path / "plain")))
    ok(cli(*TRAIN, "--out", str(tmp_path / "run"), "--log-dir", str(tmp_path / "tb"), "--log-csv",
           str(tmp_path / "log.csv")))
    # logging changes nothing the run computes
    ok(cli("snapshot", "diff", str(tmp_path / "plain" / "final.h5"), str(tmp_path / "run" / "final.h5")))

    h = history(tmp_path / "run" / "final.h5")
    ep = {k: np.asarray(v) for k, v in h.epochs.items()}
    out = ep["phase"] == PHASE_OUTPUT
    acc = events(tmp_path / "tb")
    tags = set(acc.Tags()["scalars"])
    assert {"train/error", "train/error_bits", "candidates/best_score", "train/loss", "train/score", "units/hidden",
            "units/score", "time/seconds"} <= tags
    assert not any(t.startswith("validation/") for t in tags)  # no held-out data in this run
    steps, values = scalars(acc, "train/error")
    assert steps == ep["epoch"][out].tolist()
    np.testing.assert_allclose(values, ep["true_error"][out], rtol=1e-6)  # event files hold float32
    steps, values = scalars(acc, "candidates/best_score")
    assert steps == ep["epoch"][~out].tolist()
    np.testing.assert_allclose(values, ep["best_score"][~out], rtol=1e-6)
    steps, values = scalars(acc, "units/score")
    assert steps == list(h.units["epoch"]) and len(steps) == load(str(tmp_path / "run" / "final.h5")).state.network.n_hidden
    steps, values = scalars(acc, "units/hidden")
    assert steps == list(h.scores["epoch"]) and values.tolist() == list(h.scores["hidden_units"])
    assert {"run/config/text_summary", "units/activation/text_summary"} <= set(acc.Tags()["tensors"])

    rows = read_csv(tmp_path / "log.csv")
    assert [int(r[1]) for r in rows] == ep["epoch"].tolist()
    assert [r[2] for r in rows] == ["output" if o else "candidates" for o in out]
    errors = [float(r[4]) for r, o in zip(rows, out) if o]
    assert errors == ep["true_error"][out].tolist()  # repr: exact
    installed = [(int(r[1]), r[11], float(r[12])) for r in rows if r[11]]
    assert installed == list(zip(h.units["epoch"], h.units["activation"], h.units["score"]))
    assert all(r[5] == "" for r, o in zip(rows, out) if not o) and all(r[6] == "" for r, o in zip(rows, out) if o)


def test_a_stopped_and_resumed_run_continues_its_logs_without_repeating_them(tmp_path):
    logs = ("--log-dir", str(tmp_path / "tb"), "--log-csv", str(tmp_path / "log.csv"))
    ok(cli(*TRAIN, "--out", str(tmp_path / "run"), "--stop-after", "300", *logs))
    first = read_csv(tmp_path / "log.csv")
    assert int(first[-1][1]) == 300
    ok(cli("resume", str(tmp_path / "run" / "latest.h5"), "--out", str(tmp_path / "run"), "--quiet", *logs))
    h = history(tmp_path / "run" / "final.h5")
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r[1]) for r in rows] == list(h.epochs["epoch"])  # each epoch once, in order
    assert len({r[0] for r in rows}) == 1  # one run id
    ep = np.asarray(h.epochs["epoch"])[np.asarray(h.epochs["phase"]) == PHASE_OUTPUT]
    steps, _ = scalars(events(tmp_path / "tb"), "train/error")
    assert steps == ep.tolist()
    # a resume from an earlier snapshot (the log already holds epochs after it): still each once
    ckpts = sorted(n for n in os.listdir(tmp_path / "run") if n.startswith("ckpt-"))
    early = tmp_path / "run" / ckpts[1]
    assert load(str(early)).state.counters.epoch < 300
    ok(cli("resume", str(early), "--out", str(tmp_path / "again"), "--quiet", *logs))
    again = read_csv(tmp_path / "log.csv")
    assert [int(r[1]) for r in again] == list(h.epochs["epoch"])  # the bit-exact continuation repeats nothing
    steps, _ = scalars(events(tmp_path / "tb"), "train/error")
    assert steps == ep.tolist()  # TensorBoard purged the steps after the resume point


def test_validation_curves_are_logged(tmp_path):
    ok(cli("train", "--dataset", "iris", "--seed", "0", "--validation-fraction", "0.3", "--out", str(tmp_path / "r"),
           "--quiet", "--log-dir", str(tmp_path / "tb")))
    h = history(tmp_path / "r" / "final.h5")
    steps, values = scalars(events(tmp_path / "tb"), "validation/score")
    # every phase end that was scored on held-out rows (the refit's, on all rows, has no held-out score)
    scored = [(e, v) for e, v in zip(h.scores["epoch"], h.scores["val_score"]) if not np.isnan(v)]
    assert len(scored) == len(h.scores["epoch"]) - 1 and np.isnan(h.scores["val_score"][-1])
    assert steps == [e for e, _ in scored] and len(steps) > 1
    np.testing.assert_allclose(values, [v for _, v in scored], rtol=1e-6)


def test_bad_log_destinations_fail_before_training_with_one_line(tmp_path):
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    file_not_dir = tmp_path / "f"
    file_not_dir.write_text("x")
    cases = [
        (("--log-csv", str(foreign)), "not a cascor log"),
        (("--log-csv", str(tmp_path / "nowhere" / "log.csv")), "does not exist"),
        (("--log-dir", str(file_not_dir)), "not a folder"),
    ]
    for args, message in cases:
        proc = cli(*TRAIN, "--out", str(tmp_path / "run"), *args)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()  # refused before the run claimed its directory
    assert foreign.read_text() == "a,b,c\n1,2,3\n"
    code = ("import sys; sys.modules['torch.utils.tensorboard'] = None; from cascor.cli import main; "
            f"main({list(TRAIN) + ['--out', str(tmp_path / 'run'), '--log-dir', str(tmp_path / 'tb')]!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "pip install 'cascor[track]'" in proc.stderr, proc.stderr


def test_estimator_fit_takes_loggers_and_a_warm_start_continues_them(tmp_path):
    from sklearn.datasets import make_moons

    import cascor

    X, y = make_moons(300, noise=0.2, random_state=0)
    log = CSVLogger(tmp_path / "fit.csv")
    clf = cascor.CascorClassifier(random_state=0, max_units=3, early_stopping=False, warm_start=True)
    clf.fit(X, y, callbacks=[log])
    assert len(read_csv(tmp_path / "fit.csv")) == len(clf.state_.history)
    clf.set_params(max_units=5)
    clf.fit(X, y, callbacks=[log])
    rows = read_csv(tmp_path / "fit.csv")
    assert [int(r[1]) for r in rows] == list(clf.state_.history.epochs["epoch"])


def test_mlflow_run_has_params_metrics_and_the_final_snapshot(tmp_path):
    pytest.importorskip("mlflow", reason="MLflow is optional: pip install mlflow-skinny")
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    ok(cli(*TRAIN, "--out", str(tmp_path / "run"), "--mlflow", "--mlflow-experiment", "spirals", env=env))
    os.environ.update(env)
    try:
        client = MlflowClient()
        exp = client.get_experiment_by_name("spirals")
        (run,) = client.search_runs([exp.experiment_id])
    finally:
        for k in env:
            del os.environ[k]
    state = load(str(tmp_path / "run" / "final.h5")).state
    assert run.info.status == "FINISHED" and run.data.tags["cascor.run_id"] == state.run_id
    assert run.data.params["seed"] == "1" and run.data.params["max_units"] == str(state.config.max_units)
    os.environ.update(env)
    try:
        hist = client.get_metric_history(run.info.run_id, "train_error")
        artifacts = [f.path for f in client.list_artifacts(run.info.run_id)]
    finally:
        for k in env:
            del os.environ[k]
    h = state.history
    out = np.asarray(h.epochs["phase"]) == PHASE_OUTPUT
    assert sorted(m.step for m in hist) == sorted(np.asarray(h.epochs["epoch"])[out].tolist())
    assert all(math.isfinite(m.value) for m in hist)
    assert artifacts == ["final.h5"]
