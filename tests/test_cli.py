"""The command line as a user runs it: real subprocesses (in this process where only the command's
own code is under test: cliutil), real files."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cliutil import cascor_here, last_json


def cascor(*args, check=True, env=None):
    proc = subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def snapshot_format_version():
    from cascor.snapshot.format import version_string

    return version_string()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = cascor("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1", "--out", str(out), "--json")
    return out, last_json(proc)


def test_train_writes_final_snapshot_and_json_summary(run_dir):
    out, summary = run_dir
    for key in ("solved", "hidden_units", "epochs", "output_epochs", "candidate_epochs", "train_accuracy", "train_seconds"):
        assert key in summary
    assert summary["solved"] and summary["train_accuracy"] == 1.0
    assert summary["epochs"] == summary["output_epochs"] + summary["candidate_epochs"]
    assert os.path.exists(out / "final.h5") and os.path.realpath(out / "latest.h5") == str(out / "final.h5")
    # one checkpoint per install
    assert len([n for n in os.listdir(out) if n.startswith("ckpt-")]) == summary["hidden_units"]


def test_evaluate_and_plots(run_dir, tmp_path):
    out, summary = run_dir
    ev = last_json(cascor_here("evaluate", str(out / "final.h5"), "--dataset", "two-spirals", "--json", check=True))
    assert ev["accuracy"] == 1.0 and ev["hidden_units"] == summary["hidden_units"] and "test_accuracy" in ev
    for kind in ("boundary", "history", "network"):
        png = tmp_path / f"{kind}.png"
        cascor_here("plot", str(out / "final.h5"), "--out", str(png), "--kind", kind, check=True)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_commands(run_dir, tmp_path):
    out, _ = run_dir
    final = str(out / "final.h5")
    info = last_json(cascor("snapshot", "inspect", final, "--json"))
    assert info["format_version"] == snapshot_format_version() and info["status"] == "solved"
    assert info["versions"]["numpy"] and info["versions"]["python"]  # what a bit-exact resume depends on
    assert cascor("snapshot", "verify", final).returncode == 0
    assert last_json(cascor("snapshot", "diff", final, final, "--json"))["identical"]
    ckpts = sorted(n for n in os.listdir(out) if n.startswith("ckpt-"))
    d = cascor("snapshot", "diff", final, str(out / ckpts[0]), check=False)
    assert d.returncode == 1 and "differ" in d.stdout
    listing = last_json(cascor("snapshot", "list", str(out), "--json"))
    assert {r["name"] for r in listing} >= {"final.h5", "latest.h5", ckpts[0]}
    up = tmp_path / "up.h5"
    cascor("snapshot", "upgrade", final, "--out", str(up))
    assert last_json(cascor("snapshot", "diff", final, str(up), "--json"))["identical"]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(open(final, "rb").read()[:-10])
    v = cascor("snapshot", "verify", str(bad), "--json", check=False)
    assert v.returncode == 1 and json.loads(v.stdout)["valid"] is False
    assert cascor("snapshot", "verify", check=False).returncode == 2


def test_prune_keeps_newest_and_latest(tmp_path):
    out = tmp_path / "run"
    cascor("train", "--dataset", "xor", "--preset", "cascor1c", "--seed", "2", "--out", str(out), "--checkpoint-every", "5",
           "--json", "-q")
    before = sorted(n for n in os.listdir(out) if n.startswith("ckpt-"))
    assert len(before) > 3
    cascor("snapshot", "prune", str(out), "--keep-last", "2")
    after = sorted(n for n in os.listdir(out) if n.startswith("ckpt-"))
    assert after == before[-2:]


def test_keep_last_during_training(tmp_path):
    out = tmp_path / "run"
    cascor("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1", "--out", str(out),
           "--keep-last", "3", "--checkpoint-every", "100")
    assert len([n for n in os.listdir(out) if n.startswith("ckpt-")]) == 3


def test_stop_after_then_train_resume_flag_continues(tmp_path, run_dir):
    _, full = run_dir
    out = tmp_path / "run"
    part = last_json(cascor_here("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1",
                                 "--out", str(out), "--stop-after", "500", "--json", check=True))
    assert part["epochs"] == 500 and not part["finished"]
    rest = last_json(cascor_here("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1",
                                 "--out", str(out), "--resume", "--json", check=True))
    assert rest["epochs"] == full["epochs"] and rest["hidden_units"] == full["hidden_units"]


@pytest.mark.parametrize("how, backend", [("SIGTERM to the trainer", "local"), ("Ctrl-C", "local"),
                                          ("Ctrl-C", "processes"),
                                          pytest.param("Ctrl-C", "dask", marks=pytest.mark.distributed)])
def test_signal_finishes_epoch_saves_and_exits_cleanly(tmp_path, how, backend):
    out = tmp_path / "run"
    # A regression fitted to an unreachable error index: it runs far beyond its first checkpoint.
    # Its own session, so that "Ctrl-C" can signal the whole group as a terminal does: the
    # trainer, its snapshot writer and its worker processes.
    proc = subprocess.Popen([sys.executable, "-m", "cascor", "train", "--dataset", "diabetes", "--set", "max_units=200",
                             "--set", "input_epochs=1000", "--set", "output_epochs=1000", "--set", "input_patience=0",
                             "--set", "output_patience=0", "--set", "error_index_threshold=1e-6",
                             "--set", "candidate_block=4",  # several blocks: the workers get some
                             "--no-early-stopping",  # (nothing held out: no held-out score ends it)
                             "--backend", backend, "--workers", "2", "--out", str(out), "--json", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not (out / "latest.h5").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (out / "latest.h5").exists(), "no checkpoint reached the disk while the run was going"
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    for sign in ("Traceback", "Warning", "error"):  # no worker and no snapshot writer was lost
        assert sign not in stderr, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert not summary["finished"]
    assert cascor("snapshot", "verify", str(out / "latest.h5")).returncode == 0
    assert last_json(cascor("snapshot", "inspect", str(out / "latest.h5"), "--json"))["epoch"] == summary["epochs"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "spiralz", "--out", "x"], "unknown dataset 'spiralz'"),
        (["train", "--dataset", "xor", "--set", "pool_size=-3", "--out", "x"], "'pool_size' parameter must be > 0"),
        (["train", "--dataset", "xor", "--set", "bogus=1", "--out", "x"], "unknown config key 'bogus'"),
        (["train", "--dataset", "xor", "--preset", "nope", "--out", "x"], "unknown preset 'nope'"),
        (["train", "--data", "missing.csv", "--out", "x"], "does not exist"),
        (["train", "--dataset", "xor", "--data", "f.csv", "--out", "x"], "exactly one of"),
        (["train", "--dataset", "xor", "--set", "candidate_activations=os.system", "--out", "x"], "names from"),
        (["evaluate", "missing.h5", "--dataset", "xor"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_csv_data_file_end_to_end(tmp_path):
    f = tmp_path / "data.csv"
    rows = ["x1,x2,label"] + [f"{a},{b},{'on' if (a > 0) != (b > 0) else 'off'}"
                              for a in (-1, -0.5, 0.5, 1) for b in (-1, -0.6, 0.6, 1)]
    f.write_text("\n".join(rows) + "\n")
    s = last_json(cascor_here("train", "--data", str(f), "--target", "label", "--preset", "cascor1c", "--seed", "3",
                              "--out", str(tmp_path / "run"), "--json", check=True))
    assert s["solved"] and s["train_accuracy"] == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n1,oops,1\n")
    p = cascor_here("train", "--data", str(bad), "--out", str(tmp_path / "r2"))
    assert p.returncode == 1 and "'oops' is not a number" in p.stderr


def test_piped_output_is_one_plain_line_per_install_and_json_is_json_only(tmp_path):
    p = cascor("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1",
               "--out", str(tmp_path / "r"))
    lines = p.stderr.strip().splitlines()
    summary = json.loads(cascor("snapshot", "inspect", str(tmp_path / "r" / "final.h5"), "--json").stdout)
    assert len(lines) == summary["hidden_units"] > 0 and all(": installed unit " in line for line in lines)
    assert "\r" not in p.stderr and "solved" in p.stdout
    # --json: exactly one JSON document on stdout, the readable lines on stderr.
    p = cascor("train", "--dataset", "xor", "--preset", "cascor1c", "--out", str(tmp_path / "j"), "--json")
    assert isinstance(json.loads(p.stdout), dict) and "solved" in p.stderr
    p = cascor("evaluate", str(tmp_path / "j" / "final.h5"), "--json")
    assert json.loads(p.stdout)["hidden_units"] >= 0


def test_data_and_output_mistakes_are_one_line(tmp_path):
    import gzip

    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    empty_label = tmp_path / "e.csv"
    empty_label.write_text("a,b,y\n1,2,0\n3,4,\n5,6,1\n")
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["train", "--data", str(csv), "--target", "25", "--out", "o1"], "--target 25 is out of range; the file has 3 columns"),
        (["train", "--data", str(empty_label), "--out", "o2"], "line 3: the target cell is empty"),
        (["train", "--data", str(gz), "--out", "o3"], "gzip-compressed"),
        (["train", "--data", str(binary), "--out", "o4"], "not a UTF-8 text CSV"),
        (["train", "--data", str(fifo), "--out", "o5"], "is not a regular file"),
        (["train", "--data", "/dev/zero", "--out", "o6"], "is not a regular file"),
        (["train", "--dataset", "xor", "--out", "a-file/run"], "cannot create run directory"),
        (["config", "--preset", "nope"], "unknown preset 'nope'"),
    ]
    for i, (args, message) in enumerate(cases):
        # the first through `python -m cascor`, the rest in this process (the same click group)
        proc = (subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True, cwd=tmp_path,
                               timeout=60) if i == 0 else cascor_here(*args, cwd=tmp_path))
        assert proc.returncode == 1, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    cascor_here("train", "--dataset", "xor", "--preset", "cascor1c", "--out", str(tmp_path / "r"), "-q", check=True)
    proc = cascor_here("plot", str(tmp_path / "r" / "final.h5"), "--kind", "history", "--out",
                       str(tmp_path / "missing" / "h.png"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_config_lists_every_field_and_the_presets():
    from cascor.config import CascorConfig, PRESETS
    from dataclasses import fields

    rows = json.loads(cascor("config", "--preset", "fahlman-spirals", "--json").stdout)
    assert [r["field"] for r in rows] == [f.name for f in fields(CascorConfig)]
    assert all(r["help"] for r in rows)
    assert {r["field"]: r["value"] for r in rows}["input_epsilon"] == 100.0
    presets = json.loads(cascor("config", "--presets", "--json").stdout)
    assert set(presets) == set(PRESETS) and presets["cascor1c"] == {}


@pytest.mark.slow  # 35 s; .ci/run runs `make demo` twice in the clone instead
def test_demo_runs_twice_in_the_same_folder(tmp_path):
    """`make demo` a second time: its run directories hold the first demo's runs, which the demo
    replaces (a run directory holds one run); a folder with other files is refused."""
    for _ in range(2):
        p = cascor("demo", "--out", str(tmp_path / "demo"), "--preset", "default")
        assert "byte-identical" in p.stdout, p.stdout + p.stderr
    (tmp_path / "demo" / "interrupted" / "notes.txt").write_text("mine")
    p = cascor("demo", "--out", str(tmp_path / "demo"), "--preset", "default", check=False)
    assert p.returncode == 1 and "not a cascor run" in p.stderr and "Traceback" not in p.stderr
    assert (tmp_path / "demo" / "interrupted" / "notes.txt").exists()


def test_every_command_and_option_has_help():
    import click

    from cascor.cli import main

    missing = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        elif not cmd.help:
            missing.append(" ".join(path))
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.help and p.name != "help":
                missing.append(" ".join(path + [p.opts[0]]))

    walk(main, ["cascor"])
    assert not missing, missing
