"""A stranger's snapshot must not act on the machine: every file of the hostile corpus
(tests/hostile.py) is refused with one line and exit 1, in bounded memory, with nothing read
outside the command line's paths, no network connection and no terminal escapes printed."""

import json
import os
import resource
import socket
import subprocess
import sys

import pytest

from cascor import snapshot
from cascor.errors import SnapshotError

from hostile import _edit_json, make_bases, make_corpus, reseal, torch_state_wrong_size

CANARY = "canary-7f3a9 private row, must never be printed"


def _limit_memory(gib):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    return apply


def cascor(*args, gib=None, timeout=120, cwd=None):
    return subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_memory(gib) if gib else None, cwd=cwd)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(str(tmp_path_factory.mktemp("bases")))


@pytest.fixture(scope="module")
def corpus(bases, tmp_path_factory):
    return make_corpus(*bases, str(tmp_path_factory.mktemp("corpus")))


def test_the_bases_are_valid(bases):
    for path in bases:
        snapshot.load(path)


def test_every_hostile_file_is_refused_in_process(corpus):
    assert len(corpus) >= 36  # every class make_corpus writes
    for name, path in corpus.items():
        with pytest.raises(SnapshotError) as info:
            snapshot.load(path)
        message = str(info.value)
        assert "\x1b" not in message and "\n" not in message, (name, message)
        with pytest.raises(SnapshotError):
            snapshot.verify(path)


def _clean_output(proc):
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-2000:]
    assert "\x1b" not in text and "\x07" not in text, text[-2000:]
    assert CANARY not in text


def test_the_cli_refuses_every_file_with_one_line_in_bounded_memory(corpus):
    """verify (one process for all) and inspect (one per file) under a 1 GiB address-space limit:
    a 3 GB allocation or a 12 GB torch tensor would fail with MemoryError, not a clean refusal."""
    paths = list(corpus.values())
    proc = cascor("snapshot", "verify", *paths, gib=1)
    assert proc.returncode == 1
    _clean_output(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(paths) and all(line.startswith("INVALID ") for line in lines), proc.stderr[-3000:]
    for name, path in corpus.items():
        proc = cascor("snapshot", "inspect", path, gib=1)
        _clean_output(proc)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)


# Through resume and evaluate too (torch is imported there; each is two ~3 s subprocesses, so
# one file per kind of defect: structure, JSON, allocation, attributes, sizes, names; four of
# them only in the -m slow run, for the default suite's time budget).
RESUMED = ("hardlink-cycle", "outputs-1000-units-1e6",
           *(pytest.param(n, marks=pytest.mark.slow)
             for n in ("meta-duplicate-key", "unallocated-3gb", "run-id-ansi", "activation-by-name")))


@pytest.mark.parametrize("name", RESUMED)
def test_resume_and_evaluate_refuse_in_one_line(corpus, name, tmp_path):
    for args in (("resume", corpus[name], "--out", str(tmp_path / "out"), "-q"), ("evaluate", corpus[name])):
        proc = cascor(*args, gib=4)
        _clean_output(proc)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert not os.path.exists(tmp_path / "out" / "final.h5")


def test_wrong_global_rng_states_are_refused_on_restore(bases, tmp_path):
    path = torch_state_wrong_size(bases[0], str(tmp_path / "torch.h5"))
    loaded = snapshot.load(path)  # runtime only: the training state is fine
    with pytest.raises(SnapshotError, match="global RNG states"):
        loaded.restore_globals()


# -- what a snapshot records is a hint, not an order -----------------------------------------

def _recording(base, path, data=None, backend=None, trusted_dir=False):
    """A copy of ``base`` that records ``data`` / ``backend``; in a directory whose run.json
    names its run (a forged 'own run directory') when ``trusted_dir``."""
    import shutil

    import h5py

    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(base, path)
    with h5py.File(path, "r+", locking=False) as f:
        if data is not None:
            _edit_json(f, "runtime/meta", lambda r: r.__setitem__("data", data))
        if backend is not None:
            _edit_json(f, "runtime/meta", lambda r: r.__setitem__("backend", backend))
        run_id = f.attrs["run_id"]
    reseal(path)
    if trusted_dir:
        with open(os.path.join(os.path.dirname(path), "run.json"), "w") as fh:
            json.dump({"format": "cascor-run", "run_id": run_id}, fh)
    return path


@pytest.fixture
def private_csv(tmp_path):
    p = tmp_path / "private.csv"
    p.write_text(f"{CANARY},x\n1,2\n3,4\n")
    return str(p)


def test_a_recorded_data_file_is_not_read_from_a_strangers_snapshot(bases, tmp_path, private_csv):
    snap = _recording(bases[0], str(tmp_path / "stranger" / "s.h5"), data={"file": private_csv, "target": None})
    for args in (("resume", snap, "--out", str(tmp_path / "out"), "-q"), ("evaluate", snap),
                 ("plot", snap, "--out", str(tmp_path / "b.png"))):
        proc = cascor(*args)
        _clean_output(proc)
        assert proc.returncode == 1, proc.stderr
        assert "pass --data" in proc.stderr and private_csv in proc.stderr
    # The same file with --data given: the user confirmed it (it is not two-spirals: refused by
    # the data digest, without showing what the file holds).
    proc = cascor("resume", snap, "--out", str(tmp_path / "out"), "--data", private_csv, "-q")
    _clean_output(proc)
    assert proc.returncode == 1


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "/proc/self/mounts", "../../etc/passwd", "private"])
def test_special_and_relative_recorded_paths_are_refused_even_in_the_run_directory(bases, tmp_path, target,
                                                                                  private_csv):
    if target == "fifo":
        target = str(tmp_path / "fifo.csv")
        os.mkfifo(target)
    if target == "private":
        target = private_csv
    run = tmp_path / "run"
    snap = _recording(bases[0], str(run / "latest-copy.h5"), data={"file": target, "target": None}, trusted_dir=True)
    proc = cascor("resume", snap, "--out", str(run), "-q", timeout=60)  # a FIFO read would hang: timeout fails
    _clean_output(proc)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_recorded_scheduler_is_never_connected_to(bases, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    snap = _recording(bases[0], str(tmp_path / "s" / "s.h5"),
                      backend={"name": "dask", "workers": 4096, "scheduler": f"tcp://127.0.0.1:{port}"})
    proc = cascor("resume", snap, "--out", str(tmp_path / "out"), "--dataset", "two-spirals", "--stop-after", "400",
                  "-q", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "not connecting" in proc.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody knocked
    listener.close()
    assert json.loads(proc.stdout.strip().splitlines()[-1])["epochs"] == 400


def test_snapshot_list_survives_loops_directories_and_fifos(bases, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    os.symlink("latest.h5", d / "latest.h5")  # a loop
    os.mkfifo(d / "ckpt-00000001.h5")
    (d / "final.h5").mkdir()
    import shutil

    shutil.copy(bases[0], d / "ckpt-00000002.h5")
    proc = cascor("snapshot", "list", str(d), timeout=60)
    _clean_output(proc)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 4 and sum("INVALID" in r for r in rows) == 3, proc.stdout
    proc = cascor("resume", str(d / "latest.h5"), "--out", str(tmp_path / "o"), timeout=60)
    _clean_output(proc)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
