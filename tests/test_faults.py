"""Hangs, lost work and mixed runs: the checkpoint helper under stress, failing disks, two runs
in one directory, and where a resume starts. Real helper processes, real files, real
filesystems (tmpfs, chattr +i, RLIMIT_FSIZE), real CLI subprocesses."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cliutil import cascor_here

from cascor import snapshot, trainer
from cascor.config import preset
from cascor.snapshot.manager import CheckpointManager, Retention

FAST = preset("fahlman-spirals").replace(seed=1, max_units=4)


def cascor(*args, env=None, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout, **kw)


def one_line_error(proc, *needles):
    """Exit 1, one line on stderr naming each needle, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def ckpts(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("ckpt-"))


# -- the helper: no deadlock, bounded backlog, death and stalls --------------------------------

def _every_epoch(directory, X, Y, cfg, retention=Retention()):
    mgr = CheckpointManager(str(directory), every=1, retention=retention, background=True).start()
    eng = trainer.start(cfg, X, Y)
    most = []
    trainer.run(eng, callbacks=[mgr, lambda e, ev: most.append(mgr._writer.pending) and False])
    mgr.save(eng.state, "final.h5", wait=True)
    mgr.close()
    assert max(most) <= mgr_max_pending()
    return eng


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_checkpoint_every_epoch_never_hangs(tmp_path, spirals, seed):
    """A checkpoint every epoch of a whole fahlman-spirals run (~1600 epochs). Before the fix
    this hung on seed 1 (a trainer blocked writing to the helper's full input pipe while the
    helper was blocked writing its ~400 answers back); pytest-timeout turns a hang into a failure."""
    X, Y = spirals
    eng = _every_epoch(tmp_path, X, Y, preset("fahlman-spirals").replace(seed=seed), Retention(keep_last=3))
    newest = int(ckpts(tmp_path)[-1][5:13])
    assert newest >= eng.state.counters.epoch - 1
    assert ckpts(tmp_path) == [f"ckpt-{e:08d}.h5" for e in range(newest - 2, newest + 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fahlman-spirals", "fann-cascade2"])
@pytest.mark.parametrize("seed", range(1, 9))
def test_checkpoint_every_epoch_campaign(tmp_path, spirals, name, seed, monkeypatch):
    monkeypatch.setenv("CASCOR_HELPER_DELAY", "0.0005")
    X, Y = spirals
    _every_epoch(tmp_path, X, Y, preset(name).replace(seed=seed, max_units=12), Retention(keep_last=2))


def test_checkpoint_every_epoch_with_a_slow_helper_keeps_every_file(tmp_path, spirals, monkeypatch):
    """Keep-all: every checkpoint is written, with at most MAX_PENDING of them in flight (the
    trainer waits for a helper slower than itself: here 1 ms extra per write)."""
    monkeypatch.setenv("CASCOR_HELPER_DELAY", "0.001")
    X, Y = spirals
    eng = _every_epoch(tmp_path, X, Y, FAST)
    assert len(ckpts(tmp_path)) == eng.state.counters.epoch - 1  # every epoch but the final one
    snapshot.verify(str(tmp_path / ckpts(tmp_path)[-1]))


def mgr_max_pending():
    from cascor.snapshot import background

    return background.MAX_PENDING


def test_superseded_checkpoints_are_skipped_under_keep_last(tmp_path, spirals, monkeypatch):
    """With keep_last=2 a burst of queued checkpoints is not written only to be deleted: the
    helper writes what retention keeps, and the directory ends as if every one was written."""
    monkeypatch.setenv("CASCOR_HELPER_DELAY", "0.002")
    X, Y = spirals
    mgr = CheckpointManager(str(tmp_path), every=1, retention=Retention(keep_last=2), background=True).start()
    eng = trainer.start(FAST, X, Y)
    trainer.run(eng, callbacks=[mgr])
    mgr.close()
    names = ckpts(tmp_path)
    assert names == [f"ckpt-{e:08d}.h5" for e in (eng.state.counters.epoch - 2, eng.state.counters.epoch - 1)]
    assert os.path.realpath(tmp_path / "latest.h5") == str(tmp_path / names[-1])
    for n in names:
        snapshot.verify(str(tmp_path / n))


def _kill_helper_at(epoch, mgr, sig=signal.SIGKILL):
    done = []

    def callback(engine, event):
        if not done and engine.state.counters.epoch >= epoch and mgr._writer is not None:
            os.kill(mgr._writer.pid, sig)
            done.append(mgr._writer)
    return callback, done


def test_a_dead_helper_means_synchronous_saves_with_a_warning(tmp_path, spirals):
    X, Y = spirals
    mgr = CheckpointManager(str(tmp_path), every=10, background=True).start()
    eng = trainer.start(FAST, X, Y)
    kill, done = _kill_helper_at(100, mgr)
    with pytest.warns(RuntimeWarning, match="snapshot writer process .*synchronously"):
        trainer.run(eng, callbacks=[kill, mgr])
    mgr.save(eng.state, "final.h5", wait=True)
    mgr.close()
    assert done and mgr._writer is None
    last = eng.state.counters.epoch
    # Every checkpoint after the kill was written (synchronously), up to the end.
    assert f"ckpt-{(last - 1) // 10 * 10:08d}.h5" in ckpts(tmp_path)
    assert snapshot.load(str(tmp_path / "final.h5")).state.counters.epoch == last


def test_a_stuck_helper_is_given_up_on(tmp_path, spirals):
    """A helper that stops (SIGSTOP: a hung filesystem looks the same) is killed after the stall
    timeout and the run saves synchronously; it does not hang."""
    X, Y = spirals
    mgr = CheckpointManager(str(tmp_path), every=1, background=True).start()
    mgr._writer.stall_seconds, mgr._writer.max_pending = 1.0, 4
    eng = trainer.start(FAST, X, Y)
    stop, done = _kill_helper_at(50, mgr, signal.SIGSTOP)
    with pytest.warns(RuntimeWarning, match="made no progress"):
        trainer.run(eng, callbacks=[stop, mgr], stop_at_epoch=80)
    mgr.close()
    assert done and done[0]._proc.poll() is not None  # killed
    assert "ckpt-00000079.h5" in ckpts(tmp_path)


# -- failed saves stop the run -----------------------------------------------------------------

def _train_into(out, *extra, env=None, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "cascor", "train", "--dataset", "two-spirals", "--preset",
                           "fahlman-spirals", "--seed", "1", "--checkpoint-every", "5", "-q", "--out", str(out), *extra],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=120,
                          preexec_fn=preexec_fn)


def _assert_stopped_with_last_good(proc, out, cause):
    line = one_line_error(proc, cause, "training stopped at epoch", "the last good snapshot is")
    assert len(line) < 800, line
    good = line.rsplit("the last good snapshot is ", 1)[1].strip()
    assert good.startswith(str(out)) and os.path.exists(good), line
    snapshot.verify(good)
    assert not os.path.exists(os.path.join(out, "final.h5"))
    return line


def test_a_full_disk_stops_the_run_naming_the_last_good_snapshot(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "run"
        proc = _train_into(out)
        _assert_stopped_with_last_good(proc, str(out), "No space left on device")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_file_size_limit_stops_the_run(tmp_path):
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # the first snapshots fit

    proc = _train_into(out, preexec_fn=limit)
    _assert_stopped_with_last_good(proc, str(out), "File too large")


def test_an_immutable_directory_stops_the_run(tmp_path):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and e2fsprogs")
    out = tmp_path / "run"
    proc = _train_into(out, "--stop-after", "30")
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["chattr", "+i", str(out)], check=True)
    try:
        proc = _train_into(out, "--resume")
        line = one_line_error(proc, str(out))
        assert "Operation not permitted" in line or "Permission denied" in line
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    snapshot.verify(str(out / "latest.h5"))


def test_a_run_directory_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(_train_into(tmp_path / "file" / "run"), "cannot create run directory")


# -- one run per directory ---------------------------------------------------------------------

def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    # (in this process: a refusal is the command's own code; _train_into's subprocesses are for faults)
    def train(out, *extra):
        return cascor_here("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1",
                           "--checkpoint-every", "5", "-q", "--out", str(out), *extra)

    out = tmp_path / "s1"
    assert train(out, "--stop-after", "20").returncode == 0
    before = sorted(os.listdir(out))
    line = one_line_error(train(out), "already holds another run", "--resume", "pass a new --out")
    assert sorted(os.listdir(out)) == before, line
    # A snapshot of another run resumed into it: refused too.
    other = tmp_path / "s2"
    assert train(other, "--stop-after", "20", "--seed", "2").returncode == 0
    one_line_error(cascor_here("resume", str(other / "latest.h5"), "--out", str(out), "-q"), "already holds another run")
    assert sorted(os.listdir(out)) == before
    # Continuing the run itself works.
    assert train(out, "--resume").returncode == 0
    assert os.path.exists(out / "final.h5")


def test_two_live_trainers_in_one_directory(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cascor", "train", "--dataset", "two-spirals", "--preset",
                              "fahlman-spirals", "--seed", "1", "--checkpoint-every", "1", "--keep-last", "2", "-q",
                              "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, CASCOR_HELPER_DELAY="0.003"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "run.json").exists():
            time.sleep(0.05)
        # Paused, the first trainer still holds the directory's lock, however long the second
        # takes to start (on a loaded machine the first run used to finish before the second
        # asked, and the second then "resumed" its final.h5).
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first trainer ended before the second could ask"
        try:
            second = _train_into(out, "--resume")
        finally:
            os.kill(first.pid, signal.SIGCONT)
        one_line_error(second, "in use by another cascor process", f"pid {first.pid}")
    finally:
        out_, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert os.path.exists(out / "final.h5")


def test_resume_right_after_a_kill_waits_for_the_dead_runs_helper(tmp_path):
    """kill -9 of a trainer whose helper still has checkpoints to write, then --resume at once:
    the new run waits for the lock, starts from the newest checkpoint, and latest.h5 never goes
    back; both exit cleanly (before: exit 1 'cannot prune', or the old helper deleting the new
    run's files)."""
    out = tmp_path / "run"
    env = dict(os.environ, CASCOR_HELPER_DELAY="0.01")
    first = subprocess.Popen([sys.executable, "-m", "cascor", "train", "--dataset", "two-spirals", "--preset",
                              "fahlman-spirals", "--seed", "1", "--checkpoint-every", "1", "--keep-last", "3", "-q",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len([n for n in os.listdir(out) if n.startswith("ckpt-")] if out.exists() else []) < 2:
        time.sleep(0.02)
    first.kill()
    first.wait()
    proc = _train_into(out, "--resume", "--keep-last", "3", env={"CASCOR_HELPER_DELAY": "0"})
    assert proc.returncode == 0, proc.stderr
    assert os.path.realpath(out / "latest.h5") == str(out / "final.h5")
    final = snapshot.load(str(out / "final.h5")).state
    reference = tmp_path / "ref"
    assert _train_into(reference).returncode == 0
    assert final.counters.epoch == snapshot.load(str(reference / "final.h5")).state.counters.epoch
    assert len(ckpts(out)) <= 4  # the kept 3 and the one resumed from at most


def test_prune_works_run_by_run_and_through_a_symlinked_path(tmp_path):
    """A directory from before run.json that mixes two runs: prune keeps each run's newest
    (before: the older run's files were kept and the current run's deleted); given the
    directory through a symlink, it still protects the checkpoint latest.h5 names."""
    a, b, mixed = tmp_path / "a", tmp_path / "b", tmp_path / "mixed"
    assert _train_into(a, "--stop-after", "120").returncode == 0
    assert _train_into(b, "--stop-after", "60", "--seed", "2").returncode == 0
    mixed.mkdir()
    for src in (a, b):
        for n in ckpts(src):
            shutil.copy(src / n, mixed / n)
    newest_b = ckpts(b)[-1]
    os.symlink(newest_b, mixed / "latest.h5")
    link = tmp_path / "link"
    os.symlink(mixed, link)
    proc = cascor("snapshot", "prune", str(link), "--keep-last", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    left = ckpts(mixed)
    assert ckpts(a)[-1] in left and newest_b in left
    assert len(left) == 2, left


def test_resume_skips_a_dangling_or_corrupt_latest_and_protects_its_start(tmp_path):
    out = tmp_path / "run"
    assert _train_into(out, "--stop-after", "300").returncode == 0
    newest = ckpts(out)[-1]
    os.remove(out / "latest.h5")
    os.symlink("ckpt-99999999.h5", out / "latest.h5")  # dangling
    proc = _train_into(out, "--resume", "--stop-after", "400", "--keep-last", "1")
    assert proc.returncode == 0, proc.stderr
    assert "passing over" in proc.stderr and newest in proc.stderr
    assert newest in ckpts(out)  # the one resumed from is protected (by its real path)
    assert snapshot.load(str(out / "latest.h5")).state.counters.epoch == 400
    # A corrupt latest.h5 (a regular file of garbage): the newest checkpoint that verifies.
    os.remove(out / "latest.h5")
    (out / "latest.h5").write_bytes(b"garbage" * 100)
    proc = _train_into(out, "--resume", "--stop-after", "450")
    assert proc.returncode == 0, proc.stderr
    assert snapshot.load(str(out / "ckpt-00000450.h5")).state.counters.epoch == 450
    # Nothing verifies: refused with the reason, nothing started from epoch 0.
    for n in os.listdir(out):
        if n.endswith(".h5") and not os.path.islink(out / n):
            (out / n).write_bytes(b"x")
    one_line_error(_train_into(out, "--resume"), "no snapshot there verifies")


def test_warm_start_from_a_snapshot_with_another_output_activation(tmp_path):
    import numpy as np

    from cascor import CascorClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = CascorClassifier(max_units=2, overrides={"output_activation": "asymmetric_sigmoid"}, random_state=0,
                           n_estimators=1)  # (a snapshot holds one run)
    clf.fit(X, y)
    clf.save_snapshot(str(tmp_path / "c.h5"))
    warm = CascorClassifier.from_snapshot(str(tmp_path / "c.h5"), warm_start=True)
    warm.fit(X, y)  # before: "the data differs" (targets encoded for the default activation)
    assert warm.state_.config.output_activation == "asymmetric_sigmoid"


# -- the Dask runner's direct line ---------------------------------------------------------------

def test_a_stranger_connecting_first_does_not_take_the_runners_line():
    """The runner's listener serves the connection that presents the token. Before, it served
    only the first connection: a stranger who connected first (and sent one byte, then nothing)
    pushed the run onto slow actor calls and held the listener thread forever."""
    import socket
    import threading

    pytest.importorskip("distributed")
    from cascor.parallel.channel import Channel
    from cascor.parallel.dask_cluster import DaskBlockRunner
    from cascor.parallel.runner import BlockRunner

    runner = DaskBlockRunner.__new__(DaskBlockRunner)  # no Dask worker needed for the line itself
    BlockRunner.__init__(runner)
    runner._ssl = None
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    token = os.urandom(32)
    thread = threading.Thread(target=runner._accept, args=(server, token, 30.0, 1.0), daemon=True)
    thread.start()
    stranger = socket.create_connection(("127.0.0.1", port))
    stranger.sendall(b"\x01")  # one byte of a frame header, then silence
    driver = Channel(socket.create_connection(("127.0.0.1", port)))
    driver.sock.settimeout(20)
    driver.send_bytes(token)
    driver.send(("end", (0,)))
    assert driver.recv() == ("ok", None)
    driver.close()
    stranger.close()
    thread.join(10)
    assert not thread.is_alive()
