"""Snapshots written by every released format version must load forever."""

import json
import os

import pytest

from cascor import snapshot, trainer
from cascor.snapshot.migrate import RELEASED
from cascor.workflow import load_source, scaled, targets_for

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _golden():
    for major, minor in RELEASED:
        folder = os.path.join(FIXTURES, f"v{major}.{minor}")
        with open(os.path.join(folder, "golden.json")) as fh:
            for name, expected in json.load(fh).items():
                yield pytest.param(os.path.join(folder, name), expected, id=f"v{major}.{minor}/{name}")


def _with_config_key(tmp_path, version: str, name: str, key: str, value) -> str:
    """A copy of golden file ``v<version>/<name>`` whose config carries ``key`` (resealed, so
    only the format rule can refuse it)."""
    import shutil
    import sys

    import h5py

    sys.path.insert(0, os.path.dirname(__file__))
    from hostile import _edit_json, reseal

    path = str(tmp_path / "forged.h5")
    shutil.copy(os.path.join(FIXTURES, f"v{version}", name), path)
    with h5py.File(path, "r+", locking=False) as f:
        _edit_json(f, "config", lambda c: c.__setitem__(key, value))
    reseal(path)
    return path


def test_every_released_version_has_golden_files():
    for major, minor in RELEASED:
        assert os.path.exists(os.path.join(FIXTURES, f"v{major}.{minor}", "golden.json"))


@pytest.mark.parametrize("path, expected", list(_golden()))
def test_golden_file_loads_verifies_and_resumes(path, expected, tmp_path):
    raw = snapshot.verify(path)
    assert raw.attrs["content_digest"] == expected["content_digest"]
    snap = snapshot.load(path)
    st = snap.state
    assert (st.counters.epoch, st.phase.name, st.network.n_hidden) == (expected["epoch"], expected["phase"], expected["hidden_units"])
    assert st.status == expected.get("status", st.status)
    X, Y, _ = targets_for(scaled(load_source(snap.data_source), st.input_scaling), st.config)
    eng = trainer.resume(st, X, Y)
    trainer.run(eng)
    assert eng.state.done
    # Upgrading rewrites the file in the current format: exactly what this version writes for the
    # state the migration rebuilt (and, for a current file, the very same training content).
    out = str(tmp_path / "up.h5")
    snapshot.upgrade(path, out)
    upgraded = snapshot.verify(out).attrs["content_digest"]
    assert upgraded == snapshot.save(snapshot.load(path).state, str(tmp_path / "resaved.h5"))
    if os.path.basename(os.path.dirname(path)) == "v" + snapshot.fmt.version_string():
        assert upgraded == expected["content_digest"]


def test_format_1_1_records_versions_and_1_0_files_migrate_without_them(tmp_path):
    from cascor.snapshot.codec import runtime_versions

    old = snapshot.load(os.path.join(FIXTURES, "v1.0", "finished.h5"))
    assert old.versions is None and old.version_differences() == []
    new = snapshot.load(os.path.join(FIXTURES, "v1.1", "finished.h5"))
    assert set(new.versions) == set(runtime_versions())
    assert new.versions["torch"] and new.versions["numpy"]


def test_resume_warns_when_the_versions_differ(tmp_path):
    import subprocess
    import sys

    import h5py

    sys.path.insert(0, os.path.dirname(__file__))
    from hostile import _edit_json, reseal

    path = str(tmp_path / "old.h5")
    import shutil

    shutil.copy(os.path.join(FIXTURES, "v1.1", "covariance-output.h5"), path)
    with h5py.File(path, "r+", locking=False) as f:
        _edit_json(f, "runtime/meta", lambda r: r["versions"].__setitem__("torch", "2.2.0"))
    reseal(path)
    proc = subprocess.run([sys.executable, "-m", "cascor", "resume", path, "--out", str(tmp_path / "o"), "-q",
                           "--stop-after", "310"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "was written with other versions (" in proc.stderr and "torch 2.2.0 -> " in proc.stderr


def test_a_1_2_file_migrates_with_refit_off_and_may_not_carry_the_1_3_key(tmp_path):
    from cascor.errors import CorruptSnapshotError

    st = snapshot.load(os.path.join(FIXTURES, "v1.2", "validation-stopped.h5")).state
    assert st.config.refit is False and st.validation is not None  # 1.2 runs never refit
    path = _with_config_key(tmp_path, "1.2", "validation-stopped.h5", "refit", True)
    with pytest.raises(CorruptSnapshotError, match=r"config\.refit: expected no such key in format 1\.2"):
        snapshot.load(path)


def test_a_1_3_file_migrates_with_input_l2_off_and_may_not_carry_the_1_4_key(tmp_path):
    from cascor.errors import CorruptSnapshotError

    st = snapshot.load(os.path.join(FIXTURES, "v1.3", "covariance-candidates.h5")).state
    assert st.config.input_l2 == 0.0  # 1.3 candidates decayed by input_decay alone
    assert snapshot.load(os.path.join(FIXTURES, "v1.4", "input-l2-candidates.h5")).state.config.input_l2 == 0.03
    path = _with_config_key(tmp_path, "1.3", "covariance-candidates.h5", "input_l2", 0.1)
    with pytest.raises(CorruptSnapshotError, match=r"config\.input_l2: expected no such key in format 1\.3"):
        snapshot.load(path)


def test_a_1_5_file_migrates_with_every_row_and_may_not_carry_the_1_6_key(tmp_path):
    from cascor.errors import CorruptSnapshotError

    st = snapshot.load(os.path.join(FIXTURES, "v1.5", "covariance-candidates.h5")).state
    assert st.config.candidate_rows == 0  # every 1.5 candidate phase read every row
    assert st.candidate_patterns == st.n_patterns
    new = snapshot.load(os.path.join(FIXTURES, "v1.6", "candidate-rows-candidates.h5")).state
    assert new.config.candidate_rows == 120 and new.candidate_patterns == 120 < new.n_patterns
    path = _with_config_key(tmp_path, "1.5", "covariance-candidates.h5", "candidate_rows", 100)
    with pytest.raises(CorruptSnapshotError, match=r"config\.candidate_rows: expected no such key in format 1\.5"):
        snapshot.load(path)


def test_cli_resume_of_a_finished_run_with_its_refit_pending_refits_it(tmp_path):
    """v1.3/refit-pending.h5 chose its size on held-out rows and stopped before the refit: the
    CLI's resume does the refit, exactly as the library would have right after training."""
    import subprocess
    import sys

    import torch

    path = os.path.join(FIXTURES, "v1.3", "refit-pending.h5")
    pending = snapshot.load(path)
    st = pending.state
    assert st.done and st.config.refit and st.validation is not None
    X, Y, _ = targets_for(load_source(pending.data_source), st.config)
    direct = trainer.refit(st, X, Y)
    trainer.run(direct)
    out = tmp_path / "cont"
    proc = subprocess.run([sys.executable, "-m", "cascor", "resume", path, "--out", str(out), "--json", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["refitted"] and summary["chosen_status"] == st.status
    assert summary["best_hidden_units"] == st.network.n_hidden
    cont = snapshot.load(summary["snapshot"]).state
    assert cont.validation is None and cont.n_patterns == len(X)
    assert torch.equal(cont.network.output_weights, direct.state.network.output_weights)
    assert cont.counters.epoch == direct.state.counters.epoch
