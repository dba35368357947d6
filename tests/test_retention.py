import os

from cascor import trainer
from cascor.snapshot.manager import CheckpointManager, Retention, SnapshotInfo, select_keep


def _infos(n):
    return [SnapshotInfo(f"/r/ckpt-{e:08d}.h5", e, metric=float(100 - e) if e % 3 else float(e)) for e in range(1, n + 1)]


def test_keep_last_best_and_every_are_a_union_with_the_newest_protected():
    infos = _infos(20)
    keep = select_keep(infos, Retention(keep_last=2))
    assert keep == {"/r/ckpt-00000019.h5", "/r/ckpt-00000020.h5"}
    keep = select_keep(infos, Retention(keep_best=2))
    assert keep == {"/r/ckpt-00000003.h5", "/r/ckpt-00000006.h5", "/r/ckpt-00000020.h5"}
    keep = select_keep(infos, Retention(keep_every=10, keep_last=1))
    assert keep == {"/r/ckpt-00000010.h5", "/r/ckpt-00000020.h5"}
    keep = select_keep(infos, Retention(keep_last=1), protect={"/r/ckpt-00000004.h5"})
    assert keep == {"/r/ckpt-00000004.h5", "/r/ckpt-00000020.h5"}
    assert select_keep(infos, Retention()) == {i.path for i in infos}
    assert select_keep([], Retention(keep_last=1)) == set()


def test_manager_saves_at_installs_and_every_n_and_points_latest(tmp_path, spirals, spirals_cfg):
    eng = trainer.start(spirals_cfg, *spirals)
    mgr = CheckpointManager(str(tmp_path), every=50, at_install=True, retention=Retention(keep_last=4))
    trainer.run(eng, stop_at_epoch=600, callbacks=[mgr])
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("ckpt-"))
    assert len(names) == 4
    assert os.path.basename(os.path.realpath(tmp_path / "latest.h5")) == os.path.basename(mgr.saved[-1])
    installs = eng.state.history.units["epoch"]
    assert any(f"ckpt-{e:08d}.h5" in [os.path.basename(p) for p in mgr.saved] for e in installs)
    assert all(int(n[5:13]) % 50 == 0 or int(n[5:13]) in installs for n in names)


def test_background_writer_produces_the_same_snapshots_and_reports_errors(tmp_path, spirals, spirals_cfg):
    import pytest

    from cascor import snapshot
    from cascor.errors import SnapshotError

    sync = CheckpointManager(str(tmp_path / "sync"), at_install=True)
    bg = CheckpointManager(str(tmp_path / "bg"), at_install=True, background=True)
    trainer.run(trainer.start(spirals_cfg, *spirals), stop_at_epoch=700, callbacks=[sync])
    trainer.run(trainer.start(spirals_cfg, *spirals), stop_at_epoch=700, callbacks=[bg])
    bg.close()
    names = sorted(n for n in os.listdir(tmp_path / "sync") if n.startswith("ckpt-"))
    assert names and names == sorted(n for n in os.listdir(tmp_path / "bg") if n.startswith("ckpt-"))
    for n in names:
        a = snapshot.verify(str(tmp_path / "sync" / n)).attrs
        b = snapshot.verify(str(tmp_path / "bg" / n)).attrs
        assert a["content_digest"] == b["content_digest"] and a["parent_digest"] == b["parent_digest"]
    assert os.path.realpath(tmp_path / "bg" / "latest.h5").endswith(names[-1])

    broken = CheckpointManager(str(tmp_path / "gone"), at_install=True, background=True)
    eng = trainer.start(spirals_cfg, *spirals)
    os.rmdir(tmp_path / "gone")
    with pytest.raises(SnapshotError, match="does not exist"):
        try:
            trainer.run(eng, stop_at_epoch=700, callbacks=[broken])
        finally:
            broken.close()


def test_background_and_synchronous_saves_write_the_same_objects_mid_candidate(tmp_path, spirals, spirals_cfg):
    """The helper rebuilds the state from the wire (later messages carry only new units and
    history rows); every dataset, runtime included, must match a direct save of the same state."""
    import numpy as np

    from cascor import snapshot
    from cascor.snapshot.background import BackgroundWriter
    from cascor.snapshot.codec import take_wire

    from cascor.inputs import InputScaling

    scaling = InputScaling.fit(np.asarray(spirals[0]) * 3.0 + 1.0)  # (format 1.5: the input scaling travels too)
    eng = trainer.start(spirals_cfg.replace(candidate_score="cascade2"), *spirals, input_scaling=scaling)
    gen = np.random.default_rng(5)
    ids = {"counter": 3, "numpy_generators": {"g": gen}, "data_source": {"dataset": "x"}}
    writer = BackgroundWriter()
    try:
        for k, units in enumerate((1, 3)):  # the second message continues the first
            while eng.state.pool is None or eng.state.network.n_hidden < units:
                eng.step()
            eng.step()
            sync_path, bg_path = str(tmp_path / f"sync{k}.h5"), str(tmp_path / f"bg{k}.h5")
            snapshot.save(eng.state, sync_path, **ids)
            assert writer.submit(bg_path, take_wire(eng.state, cursor=writer.cursor, **ids), {}, {}, set())
            writer.flush()
            a, b = snapshot.verify(sync_path), snapshot.verify(bg_path)
            assert "pool/out_weights" in a.arrays and "inputs/scale" in a.arrays
            assert sorted(a.arrays) == sorted(b.arrays)
            for name in a.arrays:
                assert a.arrays[name].dtype == b.arrays[name].dtype, name
                assert np.array_equal(a.arrays[name], b.arrays[name], equal_nan=True), name
            assert a.runtime == b.runtime and a.runtime["globals"]["numpy_generators"]["g"] == gen.bit_generator.state
            drop = ("created", "parent_digest")
            assert {k: v for k, v in a.attrs.items() if k not in drop} == {k: v for k, v in b.attrs.items() if k not in drop}
        assert writer.cursor.units == 3 and writer.cursor.rows == len(eng.state.history)
    finally:
        writer.close()


TRAINER_THEN_CRASH = """
import sys, time
import torch
from cascor import trainer
from cascor.config import preset
from cascor.datasets import encode_targets, two_spirals
from cascor.snapshot.manager import CheckpointManager

torch.set_num_threads(1)
ds = two_spirals()
Y = encode_targets(ds.y, ds.classes, -0.5, 0.5)
mgr = CheckpointManager(sys.argv[1], at_install=True, background=True)
eng = trainer.start(preset("fahlman-spirals").replace(seed=1), ds.X, Y)
trainer.run(eng, callbacks=[mgr, lambda engine, event: len(mgr.saved) >= 3])
print(len(mgr.saved), flush=True)
time.sleep(60)  # killed here, with the checkpoints still queued in the helper
"""


def test_checkpoints_handed_to_the_helper_survive_a_kill_of_the_trainer(tmp_path):
    """The helper writes queued checkpoints after a burst; a trainer killed (-9) before that
    loses none of them: the helper sees its input close, writes them all, and exits."""
    import signal
    import subprocess
    import sys
    import time

    from cascor import snapshot

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", TRAINER_THEN_CRASH, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "3"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    names = []
    while time.time() < deadline:
        names = sorted(n for n in os.listdir(out) if n.startswith("ckpt-"))
        if len(names) == 3 and os.path.realpath(out / "latest.h5").endswith(names[-1]):
            break
        time.sleep(0.1)
    assert len(names) == 3, names
    assert os.path.realpath(out / "latest.h5").endswith(names[-1])
    parents = [snapshot.verify(str(out / n)).attrs for n in names]
    assert [a["snapshot_counter"] for a in parents] == [1, 2, 3]
    assert parents[1]["parent_digest"] == parents[0]["content_digest"]
    assert parents[2]["parent_digest"] == parents[1]["content_digest"]
