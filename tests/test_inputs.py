"""A run's input scaling (format 1.5): ``cascor train --data`` standardises the file's columns,
keeps the map in the training state, and every reader of data (resume, evaluate, plot, the
service, the exports) applies it, so all of them take the file's own columns."""

import numpy as np
import pytest
from cliutil import cascor_here, last_json

from cascor import snapshot, trainer
from cascor.errors import DataError, StateError
from cascor.inputs import InputScaling


def test_fit_is_scikit_learns_standard_scaler_and_apply_rounds_once():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(300, 80, 50), rng.normal(0, 0.05, 50), np.full(50, 7.0)])
    s, sk = InputScaling.fit(X), StandardScaler().fit(X)
    assert np.array_equal(s.mean, sk.mean_) and np.array_equal(s.scale, sk.scale_)
    assert s.scale[2] == 1.0  # a constant column keeps scale 1 (no division by zero)
    Z = s.apply(X)
    assert Z.dtype == np.float32 and np.array_equal(Z, sk.transform(X).astype(np.float32))
    a, b = s.affine()  # the exporters' form
    assert np.allclose(X * a + b, Z, atol=1e-6)
    with pytest.raises(ValueError, match="rows of 3 columns"):
        s.apply(X[:, :2])


@pytest.mark.parametrize("mean, scale, message", [
    ([0.0, 0.0], [1.0, 0.0], "finite and positive; found 0.0"),
    ([0.0, 0.0], [1.0, -2.0], "finite and positive; found -2.0"),
    ([0.0, 0.0], [np.inf, 1.0], "finite and positive; found inf"),
    ([np.nan, 0.0], [1.0, 1.0], "non-finite mean"),
    ([0.0], [1.0], "1 means and 1 scales for a network of 2 inputs"),
])
def test_a_scaling_that_would_poison_every_prediction_is_refused(mean, scale, message):
    with pytest.raises(StateError, match=message):
        InputScaling.from_state_dict({"mean": mean, "scale": scale}, 2)


def test_a_scaled_run_saves_loads_and_resumes_bit_exactly(tmp_path, spirals):
    from cascor.config import preset

    X, Y = spirals
    raw = X.astype(np.float64) * 40.0 + 5.0  # columns far from unit scale
    scaling = InputScaling.fit(raw)
    cfg = preset("default").replace(seed=3, max_units=6)
    reference = trainer.start(cfg, scaling.apply(raw), Y, input_scaling=scaling)
    trainer.run(reference)
    eng = trainer.start(cfg, scaling.apply(raw), Y, input_scaling=scaling)
    trainer.run(eng, stop_at_epoch=reference.state.counters.epoch // 2)
    path = str(tmp_path / "mid.h5")
    snapshot.save(eng.state, path)
    loaded = snapshot.load(path).state
    assert loaded.input_scaling == scaling
    cont = trainer.resume(loaded, loaded.input_scaling.apply(raw), Y)
    trainer.run(cont)
    assert snapshot.save(cont.state, str(tmp_path / "a.h5")) == snapshot.save(reference.state, str(tmp_path / "b.h5"))
    with pytest.raises(DataError, match="input scaling has 2 columns; the data has 3"):
        trainer.start(cfg, np.zeros((4, 3), np.float32), Y[:4], input_scaling=scaling)


def test_a_file_older_than_1_5_must_not_carry_the_scaling_and_a_1_5_file_must(tmp_path, spirals):
    from hostile import _edit_json, reseal

    from cascor.config import preset
    from cascor.errors import CorruptSnapshotError

    eng = trainer.start(preset("fahlman-spirals").replace(seed=1), *spirals)
    eng.step()
    path = str(tmp_path / "s.h5")
    snapshot.save(eng.state, path)
    import h5py

    with h5py.File(path, "r+", locking=False) as f:
        _edit_json(f, "meta", lambda m: m.pop("input_scaling"))
    reseal(path)
    with pytest.raises(CorruptSnapshotError, match="expected the key input_scaling; found it missing"):
        snapshot.load(path)
    with h5py.File(path, "r+", locking=False) as f:
        _edit_json(f, "meta", lambda m: m.__setitem__("input_scaling", False))
        f.attrs["format_version"] = "1.4"
    reseal(path, "1.4")
    with pytest.raises(CorruptSnapshotError, match="meta.input_scaling: expected no such key in format 1.4"):
        snapshot.load(path)


def _cascor(*args):
    return cascor_here(*args, check=True)


@pytest.fixture(scope="module")
def raw_wine(tmp_path_factory):
    """Wine as a user's CSV: its columns as they come (standard deviations 0.12 .. 314), split
    into a training and a test file."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    X, y = load_wine(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    folder = tmp_path_factory.mktemp("wine")
    paths = {}
    for name, A, b in (("train", Xtr, ytr), ("test", Xte, yte)):
        paths[name] = folder / f"{name}.csv"
        np.savetxt(paths[name], np.column_stack([A, b]), delimiter=",", fmt="%.6g")
    return paths, Xtr, Xte, yte


def test_cli_standardises_a_data_file_and_every_command_reads_its_own_columns(raw_wine, tmp_path):
    """Raw wine through the CLI: standardised by default (no warning, accuracy of a standardised
    file), the map kept in the snapshot; evaluate on the raw test file agrees with the summary,
    the NumPy export predicts the raw rows as the network does, a run stopped half-way resumes to
    the same final state, and --no-scale-inputs trains on the columns as they are, with a warning."""
    paths, Xtr, Xte, yte = raw_wine
    out = tmp_path / "run"
    proc = _cascor("train", "--data", str(paths["train"]), "--test", str(paths["test"]), "--out", str(out),
                   "--json", "-q")
    summary = last_json(proc)
    assert "warning" not in proc.stderr
    assert summary["test_accuracy"] >= 0.9, summary  # raw columns as they are: .50-.63 (docs/results.md)
    state = snapshot.load(str(out / "final.h5")).state
    assert state.input_scaling == InputScaling.fit(np.loadtxt(paths["train"], delimiter=",")[:, :-1])

    ev = last_json(_cascor("evaluate", str(out / "final.h5"), "--data", str(paths["test"]), "--json"))
    assert ev["accuracy"] == summary["test_accuracy"]

    from cascor.inference import load

    npz = tmp_path / "model.npz"
    _cascor("export", str(out / "final.h5"), "--format", "numpy", "--out", str(npz))
    model = load(str(npz))
    import torch

    with torch.no_grad():
        net = state.best_network()(torch.as_tensor(state.input_scaling.apply(Xte))).numpy()
    assert np.allclose(model.outputs(Xte), net, atol=1e-5)
    assert np.mean(model.predict(Xte) == yte) == summary["test_accuracy"]

    half = tmp_path / "half"
    stop = max(1, summary["epochs"] // 2)
    _cascor("train", "--data", str(paths["train"]), "--out", str(half), "--stop-after", str(stop), "-q")
    _cascor("train", "--data", str(paths["train"]), "--out", str(half), "--resume", "-q")
    assert (snapshot.verify(str(half / "final.h5")).attrs["content_digest"]
            == snapshot.verify(str(out / "final.h5")).attrs["content_digest"])

    proc = _cascor("train", "--data", str(paths["train"]), "--out", str(tmp_path / "as-is"), "--no-scale-inputs",
                   "--set", "max_units=2", "--json", "-q")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the input columns of ") and "train.csv" in lines[0]
    std = Xtr.std(axis=0)
    assert f"from {std.min():.3g} to {std.max():.3g};" in lines[0] and "--no-scale-inputs" in lines[0]
    assert snapshot.load(str(tmp_path / "as-is" / "final.h5")).state.input_scaling is None
