import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from cascor import snapshot, trainer
from cascor.errors import CorruptSnapshotError, IncompatibleSnapshotError, SnapshotError, UnsafeSnapshotError
from cascor.snapshot.reader import read_snapshot
from cascor.snapshot import format as fmt
from cascor.snapshot.writer import STAGES

from snaputil import flip_bit, replace_dataset, resign, set_json


@pytest.fixture
def mid_run(spirals, spirals_cfg):
    """An engine stopped inside a candidate phase (a pool with slots exists)."""
    eng = trainer.start(spirals_cfg, *spirals)
    trainer.run(eng, stop_at_epoch=400)
    while eng.state.phase.name != "candidates" or eng.state.pool is None:
        eng.step()
    eng.step()
    return eng


@pytest.fixture
def snap_path(tmp_path, mid_run):
    path = str(tmp_path / "s.h5")
    snapshot.save(mid_run.state, path, data_source={"dataset": "two-spirals"})
    return path


def _flat(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}/"))
    elif isinstance(tree, list) and tree and isinstance(tree[0], dict):
        for i, v in enumerate(tree):
            out.update(_flat(v, f"{prefix}{i}/"))
    else:
        out[prefix] = tree.numpy() if isinstance(tree, torch.Tensor) else tree
    return out


def test_round_trip_restores_every_leaf(mid_run, snap_path):
    loaded = snapshot.load(snap_path).state
    a, b = _flat(mid_run.state.state_dict()), _flat(loaded.state_dict())
    assert set(a) == set(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind in "fiub":
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), key
        else:
            assert a[key] == b[key], key


def test_same_state_same_content_digest(tmp_path, mid_run):
    d1 = snapshot.save(mid_run.state, str(tmp_path / "a.h5"))
    d2 = snapshot.save(mid_run.state, str(tmp_path / "b.h5"))
    assert d1 == d2
    mid_run.step()
    assert snapshot.save(mid_run.state, str(tmp_path / "c.h5")) != d1


def test_verify_and_inspect_do_not_import_torch(snap_path):
    code = (
        "import sys\n"
        "from cascor.snapshot import verify, inspect\n"
        f"verify({snap_path!r}); info = inspect({snap_path!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(info['hidden_units'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cascor", "snapshot", "verify", snap_path],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "OK" in proc.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}


def test_every_single_bit_flip_is_detected(snap_path, tmp_path):
    data = open(snap_path, "rb").read()
    rng = np.random.default_rng(0)
    offsets = sorted(set(range(0, 600, 3)) | set(rng.integers(0, len(data), 400).tolist()))
    silent = []
    for off in offsets:
        p = str(tmp_path / "flip.h5")
        with open(p, "wb") as fh:
            fh.write(data)
        flip_bit(p, off, int(rng.integers(0, 8)))
        try:
            snapshot.load(p)
            silent.append(off)
        except SnapshotError:
            pass
    assert silent == []


def test_truncation_at_many_offsets_is_detected(snap_path, tmp_path):
    data = open(snap_path, "rb").read()
    for cut in list(range(0, 1024, 64)) + list(np.linspace(1024, len(data) - 1, 40).astype(int)):
        p = str(tmp_path / "cut.h5")
        with open(p, "wb") as fh:
            fh.write(data[:cut])
        with pytest.raises(CorruptSnapshotError):
            snapshot.load(p)


def test_tampered_tensor_names_object_and_digests(snap_path):
    with h5py.File(snap_path, "r+", locking=False) as f:
        f["network/output_weights"][0, 0] += 1.0
    resign(snap_path, fix_digests=False)
    with pytest.raises(CorruptSnapshotError, match=r"'network/output_weights' digest mismatch: expected [0-9a-f]{64}, found [0-9a-f]{64}"):
        snapshot.load(snap_path)


@pytest.mark.parametrize(
    "mutation, error, message",
    [
        (lambda p: replace_dataset(p, "pool/weights", np.zeros((8, 3), ">f4")), CorruptSnapshotError, "expected dtype <f4"),
        (lambda p: replace_dataset(p, "pool/weights", np.zeros((8, 2), "<f4")), CorruptSnapshotError, r"shape \(8, 2\)"),
        (lambda p: replace_dataset(p, "extra/thing", np.zeros(3)), CorruptSnapshotError, "unexpected object"),
        (lambda p: _delete(p, "optimizer/output_delta"), CorruptSnapshotError, "missing: optimizer/output_delta"),
        (lambda p: _set_attr(p, "format_version", "2.0"), IncompatibleSnapshotError, "format 2.0, this cascor reads up to " + fmt.version_string()),
        (lambda p: set_json(p, "meta", lambda m: m["hidden_activations"].__setitem__(0, "os.system")),
         CorruptSnapshotError, r"meta.hidden_activations\[0\]: expected a string .* found the string 'os.system'"),
        (lambda p: set_json(p, "config", lambda c: c.__setitem__("pool_size", -1)), CorruptSnapshotError, "pool"),
    ],
)
def test_forged_files_are_refused_before_building(snap_path, mutation, error, message):
    mutation(snap_path)
    resign(snap_path)
    with pytest.raises(error, match=message):
        snapshot.load(snap_path)
    with pytest.raises(SnapshotError):
        snapshot.verify(snap_path)


def _delete(path, name):
    with h5py.File(path, "r+", locking=False) as f:
        del f[name]


def _set_attr(path, key, value):
    with h5py.File(path, "r+", locking=False) as f:
        f.attrs[key] = value


def test_hostile_activation_name_imports_nothing(snap_path):
    set_json(snap_path, "meta", lambda m: m["hidden_activations"].__setitem__(0, "os.system"))
    resign(snap_path)
    code = (
        "import os\ncalls = []\nos.system = lambda *a: calls.append(a)\n"
        "from cascor import snapshot\nfrom cascor.errors import SnapshotError\n"
        f"for fn in (snapshot.verify, snapshot.load, snapshot.inspect):\n"
        f"    try:\n        fn({snap_path!r})\n    except SnapshotError as e:\n        print('refused', e)\n"
        "assert calls == [], calls\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "refused" in out.stdout, out.stderr


@pytest.mark.parametrize("kind", ["external_link", "soft_link", "external_storage", "virtual", "huge", "gzip_bomb"])
def test_hostile_hdf5_features_are_refused(snap_path, tmp_path, kind):
    victim = tmp_path / "secret.bin"
    victim.write_bytes(b"\0" * 4096)
    with h5py.File(snap_path, "r+", locking=False) as f:
        if kind == "external_link":
            f["network/evil"] = h5py.ExternalLink(str(victim), "/data")
        elif kind == "soft_link":
            f["network/evil"] = h5py.SoftLink("/meta")
        elif kind == "external_storage":
            del f["residual/errors"]
            f.create_dataset("residual/errors", shape=(194, 1), dtype="<f4", external=[(str(victim), 0, 4096)])
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=(194, 1), dtype="<f4")
            layout[:] = h5py.VirtualSource(str(victim), "data", shape=(194, 1))
            del f["residual/errors"]
            f.create_virtual_dataset("residual/errors", layout)
        elif kind == "huge":
            del f["residual/errors"]
            f.create_dataset("residual/errors", shape=(2**40, 1), dtype="<f8")  # 8 TB declared
        elif kind == "gzip_bomb":
            del f["residual/errors"]
            f.create_dataset("residual/errors", data=np.zeros((194, 1), "<f4"), compression="gzip", chunks=True)
    resign(snap_path, fix_digests=kind not in ("external_link", "external_storage", "virtual", "huge"))
    with pytest.raises((UnsafeSnapshotError, CorruptSnapshotError)):
        snapshot.load(snap_path)


def test_huge_declared_sizes_are_refused_from_metadata(snap_path):
    set_json(snap_path, "meta", lambda m: m.__setitem__("n_patterns", 2**40))
    with h5py.File(snap_path, "r+", locking=False) as f:
        for name in ("residual/errors", "residual/diffs"):
            del f[name]
            f.create_dataset(name, shape=(2**40, 1), dtype="<f4")
    resign(snap_path, fix_digests=False)
    with pytest.raises(SnapshotError):
        read_snapshot(snap_path)


def _make_read_only(directory):
    """chmod for ordinary users; root ignores modes, so it gets the immutable attribute instead."""
    os.chmod(directory, 0o500)
    if os.access(directory, os.W_OK):
        subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
    probe = os.path.join(directory, ".probe")
    try:
        open(probe, "w").close()
        os.remove(probe)
        return False
    except OSError:
        return True


def _make_writable(directory):
    subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
    os.chmod(directory, 0o700)


def test_failed_save_leaves_previous_snapshot_intact(tmp_path, mid_run):
    d = tmp_path / "ro"
    d.mkdir()
    path = str(d / "s.h5")
    first = snapshot.save(mid_run.state, path)
    mid_run.step()
    try:
        assert _make_read_only(d), "could not make a read-only directory (chmod and chattr +i both failed)"
        with pytest.raises(SnapshotError, match="previous file is untouched"):
            snapshot.save(mid_run.state, path)
    finally:
        _make_writable(d)
    assert snapshot.verify(path).attrs["content_digest"] == first
    assert os.listdir(d) == ["s.h5"]


def test_disk_full_during_save_keeps_old_snapshot_and_no_temp(tmp_path, mid_run):
    """RLIMIT_FSIZE makes writes fail with EFBIG mid-file, like a full disk."""
    path = str(tmp_path / "s.h5")
    first = snapshot.save(mid_run.state, path)
    code = (
        "import resource, signal, sys\n"
        "from cascor import snapshot\nfrom cascor.errors import SnapshotError\n"
        f"snap = snapshot.load({path!r})\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        f"try:\n    snapshot.save(snap.state, {path!r})\nexcept SnapshotError as e:\n    print('failed:', e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3, out.stdout + out.stderr
    assert snapshot.verify(path).attrs["content_digest"] == first
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


STAGE_SCRIPT = """
import os, sys
from cascor import snapshot
snap = snapshot.load(sys.argv[1])
snap.state.counters.epoch += 1  # a different state, so old and new are distinguishable
snapshot.save(snap.state, sys.argv[1])
"""


@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_each_save_stage_leaves_old_or_new(snap_path, stage):
    old = snapshot.verify(snap_path).attrs["content_digest"]
    env = dict(os.environ, CASCOR_FAULT_STAGE=stage)
    proc = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, snap_path], env=env, capture_output=True)
    assert proc.returncode == -9
    digest = snapshot.verify(snap_path).attrs["content_digest"]
    assert digest == old if stage != "replaced" else digest != old
    from cascor.snapshot.writer import sweep_temp_files

    sweep_temp_files(os.path.dirname(snap_path))
    assert [n for n in os.listdir(os.path.dirname(snap_path)) if ".tmp-" in n] == []


KILL_LOOP = """
import sys
from cascor import snapshot
snap = snapshot.load(sys.argv[1])
print('ready', flush=True)
while True:
    snap.state.counters.epoch += 1
    snapshot.save(snap.state, sys.argv[1])
"""


def _kill_campaign(path, kills, seed):
    import signal
    import time

    rng = np.random.default_rng(seed)
    bad = []
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, path], stdout=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            snapshot.verify(path)
        except SnapshotError as exc:
            bad.append(str(exc))
    return bad


def test_kill_during_repeated_saves_quick(snap_path):
    assert _kill_campaign(snap_path, 8, 1) == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_during_repeated_saves_campaign(snap_path):
    assert _kill_campaign(snap_path, 200, 2) == []


def test_global_rng_states_recorded_and_restored_on_request(tmp_path, mid_run):
    import random

    random.seed(11)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's generator
    np.random.seed(12)
    np.random.standard_normal()  # and in legacy NumPy's
    torch.manual_seed(13)
    gen = np.random.Generator(np.random.PCG64(14))
    gen.standard_normal(3)
    path = str(tmp_path / "g.h5")
    snapshot.save(mid_run.state, path, numpy_generators={"data": gen})
    expected = (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(1).item(), gen.random())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    gen2 = np.random.Generator(np.random.PCG64(0))
    snapshot.load(path, restore_globals=True, numpy_generators={"data": gen2})
    assert (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(1).item(), gen2.random()) == expected


def test_credentials_never_written(tmp_path, mid_run):
    with pytest.raises(SnapshotError, match="credentials"):
        snapshot.save(mid_run.state, str(tmp_path / "x.h5"), backend={"name": "dask", "scheduler": "tcp://user:pw@host:8786"})
