"""Exports run where cascor is not: ONNX through onnxruntime, the C source through the system
compiler, the .npz through cascor.inference in a process without torch. Every format is compared
with cascor's own forward pass (torch) and with the estimators' predict/predict_proba."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from cliutil import cascor_here
from sklearn.datasets import load_diabetes, load_iris, make_moons, make_regression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, PolynomialFeatures, RobustScaler, StandardScaler

import cascor
from cascor import inference
from cascor.activations import ACTIVATION_NAMES, ACTIVATION_SPECS, OUTPUT_ACTIVATION_NAMES
from cascor.errors import ExportError
from cascor.exporters import CHECK_TOLERANCE, export, model_from
from cascor.exporters.check import CModel, compiler, onnx_outputs, onnx_session, probe_rows
from cascor.exporters.model import network_parts
from cascor.exporters.to_c import to_c
from cascor.exporters.to_onnx import to_onnx
from cascor.kernels import get_activation
from cascor.network import CascadeNetwork, HiddenUnit

pytest.importorskip("onnx", reason="the export extra: pip install 'cascor[export]'")
pytest.importorskip("onnxruntime", reason="the export extra: pip install 'cascor[export]'")

needs_cc = pytest.mark.skipif(compiler() is None, reason="no C compiler")

# The C export computes in float: measured differences from cascor's own float32 forward pass on
# the random networks below are ~1e-6 (libm's expf/tanhf against torch's vectorised kernels, sums
# in another order); the stated tolerance is 1e-5 on values in the outputs' range. Against the
# float64 model, float artefacts of trained networks are held to the exporter's CHECK_TOLERANCE.
C_FLOAT_TOL = 1e-5


def random_network(activations, output_activation, n_inputs=3, n_outputs=2, seed=0):
    """A network with one unit per activation (alternating steepness 1 and 0.5), random weights."""
    g = torch.Generator().manual_seed(seed)
    net = CascadeNetwork(n_inputs, n_outputs, output_activation, capacity=len(activations))
    for k, act in enumerate(activations):
        w = torch.rand(1 + n_inputs + k, generator=g) * 2 - 1
        net.add_unit(HiddenUnit(w, act, 1.0 if k % 2 == 0 else 0.5), torch.rand(n_outputs, generator=g) - 0.5)
    net.output_weights.copy_(torch.rand(n_outputs, net.fan_in, generator=g) * 2 - 1)
    return net


def regression_model(net):
    return inference.Model(input_scale=np.ones(net.n_inputs), input_offset=np.zeros(net.n_inputs),
                           task="regression", **network_parts(net))


def write_onnx(model, path, dtype):
    proto = to_onnx(model, dtype=dtype)
    assert_every_initializer_used(proto)
    path.write_bytes(proto.SerializeToString())
    return onnx_session(str(path))


def assert_every_initializer_used(proto):
    used = {name for node in proto.graph.node for name in node.input}
    unused = [init.name for init in proto.graph.initializer if init.name not in used]
    assert not unused, unused  # (onnxruntime warns about each one at load)


def test_numpy_activations_equal_the_kernels_and_ranges_equal_the_registry():
    s = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    for name in ACTIVATION_SPECS:
        out = torch.empty(1, len(s), dtype=torch.float64)
        get_activation(name).forward(s[None, :].clone(), out)
        np.testing.assert_allclose(inference.ACTIVATIONS[name](s[None, :].numpy()), out.numpy(), rtol=0, atol=1e-14,
                                   err_msg=name)
    assert set(inference.ACTIVATIONS) == set(ACTIVATION_SPECS)
    assert set(inference.OUTPUT_RANGES) == set(OUTPUT_ACTIVATION_NAMES)
    for name, (low, high) in inference.OUTPUT_RANGES.items():
        assert (ACTIVATION_SPECS[name].low, ACTIVATION_SPECS[name].high) == (low, high)


@pytest.mark.parametrize("output_activation", OUTPUT_ACTIVATION_NAMES)
def test_onnx_equals_cascor_forward_for_every_activation(tmp_path, output_activation):
    net = random_network(ACTIVATION_NAMES, output_activation)
    model = regression_model(net)
    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, size=(500, net.n_inputs)).astype(np.float32)
    for dtype, tdtype in (("float64", torch.float64), ("float32", torch.float32)):
        got = onnx_outputs(write_onnx(model, tmp_path / f"m-{dtype}.onnx", dtype), X)
        want = net.forward(torch.from_numpy(X), dtype=tdtype).numpy()
        assert got["outputs"].dtype == np.dtype(dtype)
        # float64: within 1e-6 (in fact ~1e-15); float32: float32 rounding of unbounded (linear)
        # outputs is relative, a few ulp of values up to ~4 here
        rtol = 0 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(got["outputs"], want, rtol=rtol, atol=1e-6, err_msg=dtype)
        np.testing.assert_allclose(got["prediction"], want, rtol=rtol, atol=1e-6)
    # float64 graphs are the NumPy reference to rounding
    np.testing.assert_allclose(got_outputs := onnx_outputs(onnx_session(str(tmp_path / "m-float64.onnx")), X)["outputs"],
                               model.outputs(X), rtol=0, atol=1e-13)
    assert got_outputs.shape == (len(X), 2)


@needs_cc
@pytest.mark.parametrize("output_activation", OUTPUT_ACTIVATION_NAMES)
def test_c_equals_cascor_forward_for_every_activation(tmp_path, output_activation):
    net = random_network(ACTIVATION_NAMES, output_activation)
    model = regression_model(net)
    header, source = to_c(model, "net.h", prefix="net_")
    (tmp_path / "net.h").write_text(header)
    (tmp_path / "net.c").write_text(source)
    X = probe_rows(model, 500)
    f32, _ = CModel(str(tmp_path / "net.c"), "net_predict", 2, workdir=str(tmp_path)).predict(X)
    np.testing.assert_allclose(f32, net.forward(torch.from_numpy(X)).numpy(), rtol=0, atol=C_FLOAT_TOL)
    f64, _ = CModel(str(tmp_path / "net.c"), "net_predict", 2, double=True, workdir=str(tmp_path)).predict(X)
    # float inputs, double arithmetic: only the final cast to float separates it from the model
    np.testing.assert_allclose(f64, model.outputs(X.astype(np.float32)).astype(np.float32), rtol=0, atol=1e-7)
    # a float64 export: double throughout, the float64 model to rounding
    header, source = to_c(model, "net.h", prefix="net_", double=True)
    assert "int net_predict(const double *in, double *out);" in header
    (tmp_path / "net.h").write_text(header)
    (tmp_path / "net.c").write_text(source)
    d64, _ = CModel(str(tmp_path / "net.c"), "net_predict", 2, workdir=str(tmp_path), io="double").predict(X)
    np.testing.assert_allclose(d64, model.outputs(X), rtol=0, atol=1e-13)


@pytest.fixture(scope="module")
def moons():
    return make_moons(400, noise=0.3, random_state=0)


@pytest.fixture(scope="module", params=["covariance", "cascade2"])
def fitted_classifier(request, moons):
    # (cascade2 with the default pool's periodic units grows weights in the thousands: such a
    # network is tested on its own below)
    X, y = moons
    clf = cascor.CascorClassifier(random_state=0, candidate_score=request.param, early_stopping=False, max_units=6,
                                  candidate_activations=("symmetric_sigmoid", "gaussian", "tanh"))
    return clf.fit(X, y)


def test_onnx_equals_predict_proba_for_both_scores(tmp_path, fitted_classifier, moons):
    X, _ = moons
    clf = fitted_classifier
    assert clf.n_hidden_units_ > 0
    rows = np.vstack([X, probe_rows(model_from(clf), 500)])
    report = export(clf, tmp_path / "m.onnx", format="onnx", dtype="float64")
    got = onnx_outputs(onnx_session(str(tmp_path / "m.onnx")), rows)
    np.testing.assert_allclose(got["probabilities"], clf.predict_proba(rows), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["label"], clf.predict(rows))
    assert report["check"]["max_abs_diff"] < 1e-12 and report["hidden_units"] == clf.n_hidden_units_
    # float32: float32 rounding, as in cascor's own float32 forward pass (measured ~1e-6 to 1e-5)
    report = export(clf, tmp_path / "m32.onnx", format="onnx", dtype="float32")
    got = onnx_outputs(onnx_session(str(tmp_path / "m32.onnx")), rows)
    assert got["probabilities"].dtype == np.float32
    np.testing.assert_allclose(got["probabilities"], clf.predict_proba(rows), rtol=0, atol=CHECK_TOLERANCE)
    torch32 = clf.network_.forward(torch.from_numpy(rows.astype(np.float32))).numpy()
    np.testing.assert_allclose(got["outputs"], torch32, rtol=0, atol=CHECK_TOLERANCE)
    assert 0 < report["check"]["max_abs_diff"] < CHECK_TOLERANCE


@needs_cc
def test_c_and_numpy_equal_predict_proba(tmp_path, fitted_classifier, moons):
    X, _ = moons
    clf = fitted_classifier
    export(clf, tmp_path / "m.npz", format="numpy")
    loaded = inference.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    report = export(clf, tmp_path / "m.c", format="c", prefix="moons_")
    assert report["paths"] == [str(tmp_path / "m.c"), str(tmp_path / "m.h")] and report["dtype"] == "float32"
    out, ret = CModel(str(tmp_path / "m.c"), "moons_predict", 2, workdir=str(tmp_path)).predict(X)
    np.testing.assert_allclose(out, clf.predict_proba(X), rtol=0, atol=CHECK_TOLERANCE)
    assert np.mean(clf.classes_[ret] == clf.predict(X)) >= 0.99  # a float rounding can flip a row on the boundary


@pytest.mark.parametrize("labels", [np.array(["setosa", "versi", "virgi"]), np.array([10, 20, 30]),
                                    np.array([-1.0, 0.0, 2.0])], ids=["str", "int", "float"])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_class_labels_of_every_kind_and_both_output_losses(tmp_path, labels, loss):
    X, y = load_iris(return_X_y=True)
    y = labels[y]
    pipe = make_pipeline(StandardScaler(), cascor.CascorClassifier(random_state=0, output_loss=loss, max_units=4))
    pipe.fit(X, y)
    export(pipe, tmp_path / "m.onnx", format="onnx", dtype="float64")
    import onnx

    assert_every_initializer_used(onnx.load(str(tmp_path / "m.onnx")))
    got = onnx_outputs(onnx_session(str(tmp_path / "m.onnx")), X)
    np.testing.assert_allclose(got["probabilities"], pipe.predict_proba(X), rtol=0, atol=1e-6)
    assert got["label"].dtype.kind == ("O" if labels.dtype.kind == "U" else labels.dtype.kind)
    np.testing.assert_array_equal(got["label"].astype(labels.dtype), pipe.predict(X))
    export(pipe, tmp_path / "m.npz", format="numpy")
    loaded = inference.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    assert loaded.predict(X).dtype == pipe.predict(X).dtype


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler((-1, 1)), MaxAbsScaler(), RobustScaler()],
                         ids=lambda s: type(s).__name__)
def test_pipeline_scalers_fold_into_the_export(tmp_path, scaler):
    X, y = load_diabetes(return_X_y=True)
    X = X * 100 + 3  # scalers that do something
    pipe = make_pipeline(scaler, StandardScaler(), cascor.CascorRegressor(random_state=0, max_units=3)).fit(X, y)
    export(pipe, tmp_path / "d.onnx", format="onnx", dtype="float64")
    got = onnx_outputs(onnx_session(str(tmp_path / "d.onnx")), X)
    np.testing.assert_allclose(got["prediction"][:, 0], pipe.predict(X), rtol=1e-9, atol=1e-9)
    export(pipe, tmp_path / "d.npz", format="numpy")
    np.testing.assert_allclose(inference.load(tmp_path / "d.npz").predict(X), pipe.predict(X), rtol=1e-12)


@needs_cc
def test_multi_output_regressor_in_target_units_every_format(tmp_path):
    X, Y = make_regression(300, 5, n_targets=2, noise=5.0, random_state=0)
    Y[:, 1] = Y[:, 1] * 50 + 1000
    reg = cascor.CascorRegressor(random_state=0, max_units=3).fit(X, Y)
    want = reg.predict(X)
    export(reg, tmp_path / "r.onnx", format="onnx", dtype="float64")
    np.testing.assert_allclose(onnx_outputs(onnx_session(str(tmp_path / "r.onnx")), X)["prediction"], want, rtol=1e-10)
    export(reg, tmp_path / "r.npz", format="numpy")
    np.testing.assert_allclose(inference.load(tmp_path / "r.npz").predict(X), want, rtol=1e-12)
    export(reg, tmp_path / "r.c", format="c")
    out, ret = CModel(str(tmp_path / "r.c"), "predict", 2, workdir=str(tmp_path)).predict(X)
    assert not ret.any()
    np.testing.assert_allclose(out, want, rtol=0, atol=CHECK_TOLERANCE * np.max(reg._scaling[1]))


def test_snapshot_export_is_the_best_network_of_a_validation_run(tmp_path, moons):
    X, y = moons
    clf = cascor.CascorClassifier(random_state=3, early_stopping=True, validation_fraction=0.2, max_units=12).fit(X, y)
    state = clf.state_
    model = model_from(state)
    assert model.n_hidden == state.best_network().n_hidden == clf.n_hidden_units_
    np.testing.assert_allclose(model.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)


def test_unexportable_sources_and_options_are_refused(tmp_path):
    with pytest.raises(ExportError, match="not fitted"):
        export(cascor.CascorClassifier(), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="cannot export a list"):
        export([1, 2], tmp_path / "m.onnx")
    X, y = make_moons(100, random_state=0)
    with pytest.raises(ExportError, match="PolynomialFeatures"):
        export(make_pipeline(PolynomialFeatures(), cascor.CascorClassifier(max_units=1)).fit(X, y), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="clip=True"):
        export(make_pipeline(MinMaxScaler(clip=True), cascor.CascorClassifier(max_units=1)).fit(X, y), tmp_path / "m.onnx")
    clf = cascor.CascorClassifier(max_units=1).fit(X, y)
    with pytest.raises(ExportError, match="format 'tflite'"):
        export(clf, tmp_path / "m", format="tflite")
    with pytest.raises(ExportError, match="C prefix"):
        export(clf, tmp_path / "m.c", format="c", prefix="1-bad")
    with pytest.raises(ExportError, match="does not exist"):
        export(clf, tmp_path / "nowhere" / "m.onnx")
    assert os.listdir(tmp_path) == []


@needs_cc
def test_a_network_that_needs_double_precision_is_refused_in_float32(tmp_path, moons):
    """cascade2 with periodic units grows weights in the thousands (cos(7000 x)): rounding its
    inputs to float, or float arithmetic, moves probabilities by up to ~0.7. A float32 export of it
    is refused with the fix; float64 exports (ONNX; C with double in and out) agree with the model.
    (Five units: with a sixth, the cascade amplifies float64 rounding so far that onnxruntime's and
    torch's float64 passes differ by 1.4e-4 on an AMD EPYC -- past the 1e-4 gate -- and agree on
    other CPUs; at five they differ by ~5e-10 while float32 is off by 0.12.)"""
    X, y = moons
    clf = cascor.CascorClassifier(random_state=0, candidate_score="cascade2", early_stopping=False, max_units=5,
                                  candidate_activations=("symmetric_sigmoid", "cos_symmetric")).fit(X, y)
    largest = max(float(u.weights.abs().max()) for u in clf.network_.units)
    assert largest > 1000
    torch32 = clf.network_.forward(torch.from_numpy(X.astype(np.float32))).numpy()[:, 0]
    assert np.abs(torch32 - clf.predict_proba(X)[:, 1]).max() > 1e-2  # cascor's own float32 pass is off too
    for fmt, name in (("onnx", "m.onnx"), ("c", "m.c")):
        with pytest.raises(ExportError, match="needs double precision; export with --dtype float64"):
            export(clf, tmp_path / name, format=fmt, dtype="float32")
    assert os.listdir(tmp_path) == []
    report = export(clf, tmp_path / "m.onnx", format="onnx")
    assert report["check"]["max_abs_diff"] < CHECK_TOLERANCE
    report = export(clf, tmp_path / "m.c", format="c", dtype="float64")
    assert report["dtype"] == "float64" and "#define CASCOR_DOUBLE" in (tmp_path / "m.c").read_text()
    assert "int predict(const double *in, double *out);" in (tmp_path / "m.h").read_text()
    out, ret = CModel(str(tmp_path / "m.c"), "predict", 2, workdir=str(tmp_path), io="double").predict(X)
    np.testing.assert_allclose(out, clf.predict_proba(X), rtol=0, atol=CHECK_TOLERANCE)
    np.testing.assert_array_equal(clf.classes_[ret], clf.predict(X))
    report = export(clf, tmp_path / "forced.onnx", format="onnx", dtype="float32", check=False)
    assert "check" not in report and (tmp_path / "forced.onnx").exists()


# -- the NumPy predictor where torch is not ---------------------------------------------------

def test_numpy_predictor_imports_neither_torch_nor_h5py(tmp_path, moons):
    X, _ = moons
    clf = cascor.CascorClassifier(random_state=0, max_units=4).fit(X, moons[1])
    export(clf, tmp_path / "m.npz", format="numpy")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "want.npy", clf.predict_proba(X))
    code = textwrap.dedent(f"""
        import sys, numpy as np
        {{}}
        model = load({str(tmp_path / 'm.npz')!r})
        p = model.predict_proba(np.load({str(tmp_path / 'X.npy')!r}))
        assert np.abs(p - np.load({str(tmp_path / 'want.npy')!r})).max() < 1e-12
        bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'h5py', 'sklearn', 'scipy'))
        assert not bad, bad
        print('ok', {{}})
    """)
    # installed cascor: the package's cascor.inference
    installed = code.format("from cascor.inference import load", "sorted(m for m in sys.modules if m.startswith('cascor'))")
    proc = subprocess.run([sys.executable, "-c", installed], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok ['cascor', 'cascor.inference']"
    # the module copied beside the model, where cascor is not importable at all
    shutil.copy(inference.__file__, tmp_path / "cascade_model.py")
    standalone = code.format("sys.modules['cascor'] = None\nfrom cascade_model import load", "'standalone'")
    proc = subprocess.run([sys.executable, "-c", standalone], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_hostile_or_damaged_npz_is_refused_with_the_reason(tmp_path):
    net = random_network(["tanh", "gaussian"], "linear")
    good = regression_model(net).to_arrays()
    cases = {
        "pickled": (dict(good, hidden_activations=np.array([print, "tanh"], dtype=object)), "not a readable .npz"),
        "missing": ({k: v for k, v in good.items() if k != "output_weights"}, "missing output_weights"),
        "format": (dict(good, format=np.array("cascor-inference/9")), "format 'cascor-inference/9'"),
        "activation": (dict(good, hidden_activations=np.array(["tanh", "os.system"])), "hidden unit 1 activation"),
        "softmax hidden": (dict(good, hidden_activations=np.array(["softmax", "tanh"])), "hidden unit 0 activation"),
        "shape": (dict(good, hidden_weights=good["hidden_weights"][:-1]), "hidden_weights: expected 9 values"),
        "outputs": (dict(good, output_weights=good["output_weights"][:, :-1]), "output_weights: expected shape"),
        "text": (dict(good, task=np.array(3.0)), "task: expected text"),
        "nan": (dict(good, output_weights=good["output_weights"] * np.nan), "non-finite"),
        "classes": (dict(good, task=np.array("classification"), classes=np.array([1, 2, 3])), "output units"),
    }
    for name, (arrays, message) in cases.items():
        with pytest.raises(inference.ModelFileError, match=message.replace("(", r"\(")):
            inference.load(_npz(tmp_path / f"{name}.npz", **arrays))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(inference.ModelFileError, match="junk.npz: not a readable"):
        inference.load(tmp_path / "junk.npz")
    m = inference.load(_npz(tmp_path / "good.npz", **good))
    with pytest.raises(ValueError, match=r"expected shape \(n, 3\)"):
        m.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite value at row 1, column 2"):
        m.predict(np.array([[0, 0, 0], [0, 0, np.inf]]))


# -- the command line --------------------------------------------------------------------------

def cli(*args):
    # in this process (cliutil): an export is the command's own code; the missing-extra case
    # below needs a process of its own
    return cascor_here(*args)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = cli("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", "1", "--out", str(out),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out / "final.h5"


def test_cli_export_every_format_round_trip(tmp_path, snapshot):
    from cascor.datasets import two_spirals
    from cascor.snapshot import load

    state = load(str(snapshot)).state
    X = two_spirals().X
    want = state.network.forward(torch.from_numpy(X), dtype=torch.float64).numpy()
    for fmt, name in (("onnx", "s.onnx"), ("numpy", "s.npz"), ("c", "s.c")):
        proc = cli("export", str(snapshot), "--format", fmt, "--out", str(tmp_path / name), "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["hidden_units"] == state.network.n_hidden and report["format"] == fmt
        if fmt != "c" or compiler():
            assert report["check"]["max_abs_diff"] < {"numpy": 1e-15, "onnx": 1e-6, "c": CHECK_TOLERANCE}[fmt]
    got = onnx_outputs(onnx_session(str(tmp_path / "s.onnx")), X)["outputs"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(inference.load(tmp_path / "s.npz").outputs(X), want, rtol=0, atol=1e-12)
    assert (tmp_path / "s.h").read_text().count("int predict(const float *in, float *out);") == 1
    proc = cli("export", str(snapshot), "--out", str(tmp_path / "t.onnx"))
    assert proc.returncode == 0 and "checked with onnxruntime on 1000 rows" in proc.stdout


def test_cli_export_errors_are_one_line(tmp_path, snapshot):
    cases = [
        (["export", str(tmp_path / "none.h5"), "--out", str(tmp_path / "x.onnx")], "does not exist"),
        (["export", str(snapshot), "--out", str(tmp_path / "no" / "x.onnx")], "does not exist"),
        (["export", str(snapshot), "--format", "c", "--c-prefix", "a b", "--out", str(tmp_path / "x.c")],
         "C prefix 'a b'"),
    ]
    for args, message in cases:
        proc = cli(*args)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    # without the export extra: what to install (sys.modules['onnx'] = None makes `import onnx` fail)
    code = ("import sys; sys.modules['onnx'] = None; from cascor.cli import main; "
            f"main(['export', {str(snapshot)!r}, '--out', {str(tmp_path / 'x.onnx')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "pip install 'cascor[export]'" in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []
