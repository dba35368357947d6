import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from cascor.datasets import two_spirals
from cascor.sklearn import CascorClassifier, CascorRegressor


@parametrize_with_checks([CascorClassifier(max_units=8, random_state=0), CascorRegressor(max_units=8, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_classifier_on_two_spirals_exposes_learned_attributes():
    ds = two_spirals()
    clf = CascorClassifier(preset="fahlman-spirals", random_state=1).fit(ds.X, ds.y)
    assert clf.converged_ and clf.score(ds.X, ds.y) == 1.0
    assert clf.n_hidden_units_ == len(clf.history_["units"]["epoch"])
    assert clf.seed_ == 1 and clf.predict_proba(ds.X).shape == (194, 2)


def test_warm_start_continues_the_same_run_exactly():
    ds = two_spirals()
    one = CascorClassifier(preset="fahlman-spirals", random_state=3).fit(ds.X, ds.y)
    part = CascorClassifier(preset="fahlman-spirals", random_state=3, max_epochs=500, warm_start=True).fit(ds.X, ds.y)
    assert not part.converged_ and part.state_.counters.epoch == 500
    part.set_params(max_epochs=None).fit(ds.X, ds.y)
    assert part.converged_ and part.n_hidden_units_ == one.n_hidden_units_
    np.testing.assert_array_equal(part.network_.output_weights.numpy(), one.network_.output_weights.numpy())


def test_snapshot_round_trip_and_resume(tmp_path):
    ds = two_spirals()
    part = CascorClassifier(preset="fahlman-spirals", random_state=2, max_epochs=600).fit(ds.X, ds.y)
    path = str(tmp_path / "clf.h5")
    part.save_snapshot(path)
    again = CascorClassifier.from_snapshot(path, preset="fahlman-spirals", warm_start=True)
    np.testing.assert_array_equal(again.predict(ds.X), part.predict(ds.X))
    again.fit(ds.X, ds.y)
    full = CascorClassifier(preset="fahlman-spirals", random_state=2).fit(ds.X, ds.y)
    np.testing.assert_array_equal(again.network_.output_weights.numpy(), full.network_.output_weights.numpy())


def test_regressor_learns_and_rescales_targets():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(300, 2))
    y = 10.0 + 5.0 * np.sin(2 * X[:, 0]) * X[:, 1]
    reg = CascorRegressor(preset="cascor1c", max_units=20, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.9
    assert abs(reg.predict(X).mean() - y.mean()) < 0.5


def test_random_state_none_does_not_consume_global_numpy_rng():
    ds = two_spirals()
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    CascorClassifier(preset="fahlman-spirals", max_epochs=50).fit(ds.X, ds.y)
    assert np.array_equal(before, np.random.get_state()[1])


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="only one class"):
        CascorClassifier().fit(np.zeros((4, 2)), np.ones(4))


@pytest.mark.distributed
def test_fit_on_worker_processes_gives_the_same_model():
    """backend/n_jobs change where candidate pools are computed, never the fitted model."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] * X[:, 1] + np.sin(X[:, 2]) > 0).astype(int)
    params = dict(preset="cascor1c", max_units=3, pool_size=16, overrides={"candidate_block": 8}, random_state=5)
    local = CascorClassifier(**params).fit(X, y)
    spread = CascorClassifier(**params, backend="processes", n_jobs=2).fit(X, y)
    assert spread.n_hidden_units_ == local.n_hidden_units_ == 3
    np.testing.assert_equal(spread.history_, local.history_)  # NaN where a phase has no score
    for a, b in zip(spread.network_.units, local.network_.units):
        np.testing.assert_array_equal(a.weights.numpy(), b.weights.numpy())
    np.testing.assert_array_equal(spread.network_.output_weights.numpy(), local.network_.output_weights.numpy())
    assert spread.backend_ == {"name": "processes", "workers": 2, "scheduler": None}
    assert local.backend_ == {"name": "local", "workers": None, "scheduler": None}


def test_backend_parameters_are_checked_at_fit():
    ds = two_spirals()
    with pytest.raises(Exception, match="unknown backend 'gpu'"):
        CascorClassifier(backend="gpu").fit(ds.X, ds.y)
    with pytest.raises(ValueError, match="'n_jobs' parameter must be None or an int"):
        CascorClassifier(n_jobs="2").fit(ds.X, ds.y)
