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
