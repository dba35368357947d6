"""Snapshots written by every released format version must load forever."""

import json
import os

import pytest

from cascor import snapshot, trainer
from cascor.snapshot.migrate import RELEASED
from cascor.workflow import load_source, targets_for

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _golden():
    for major, minor in RELEASED:
        folder = os.path.join(FIXTURES, f"v{major}.{minor}")
        with open(os.path.join(folder, "golden.json")) as fh:
            for name, expected in json.load(fh).items():
                yield pytest.param(os.path.join(folder, name), expected, id=f"v{major}.{minor}/{name}")


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
    X, Y, _ = targets_for(load_source(snap.data_source), st.config)
    eng = trainer.resume(st, X, Y)
    trainer.run(eng)
    assert eng.state.done
    # Upgrading rewrites the file in the current format with the same training content.
    out = str(tmp_path / "up.h5")
    snapshot.upgrade(path, out)
    assert snapshot.verify(out).attrs["content_digest"] == expected["content_digest"]
