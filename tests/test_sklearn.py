import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.datasets import make_moons

from cascor.datasets import two_spirals
from cascor.sklearn import CascorClassifier, CascorRegressor


# A weight of 2 equals a repeated row only up to float rounding, which a whole fit's quickprop
# steps amplify (and a held-out split of n + k rows is another split): the weighted fit is
# checked against repeated rows where rounding cannot have grown (test below), not end to end.
WEIGHT_EQUIVALENCE = {"check_sample_weight_equivalence_on_dense_data":
                      "weights equal repeated rows up to float rounding that quickprop amplifies over a fit"}


# check_class_weight_classifiers weighs one class of 50 noisy rows by 1e-4. Before the weighted
# "solved" test those rows kept the run growing to its unit limit fitting nothing, and its periodic
# units extrapolated into regions predicted as the weightless class (84-88 % class 0 where the check
# asks > 87 %); now the run stops once the wrong rows weigh less than half a row.
# The checks' data is small, so each fit averages 20 cascades (n_estimators='auto'); max_units=4
# keeps the fits on their random, unsolvable data to seconds.
@parametrize_with_checks([CascorClassifier(random_state=0, max_units=4), CascorRegressor(random_state=0, max_units=4)],
                         expected_failed_checks=lambda est: WEIGHT_EQUIVALENCE)
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


def test_every_config_field_is_a_parameter_and_reaches_the_config():
    from dataclasses import fields

    from cascor.config import CascorConfig

    params = CascorClassifier().get_params()
    assert {f.name for f in fields(CascorConfig)} - {"seed"} <= set(params)
    clf = CascorClassifier(input_patience=3, candidate_activations=("gaussian",), max_units=2, random_state=0,
                           early_stopping=False)
    clf.fit(*make_moons(60, noise=0.2, random_state=0))
    cfg = clf.state_.config
    assert (cfg.input_patience, cfg.candidate_activations, cfg.max_units) == (3, ("gaussian",), 2)


def test_early_stopping_attributes_threads_and_auto_threshold():
    import torch

    X, y = make_moons(400, noise=0.3, random_state=0)
    threads = torch.get_num_threads()
    assert CascorClassifier(random_state=0, n_estimators=1).fit(X, y).refitted_  # 400 >= 300: held out, refit
    clf = CascorClassifier(random_state=0, refit=False, n_estimators=1).fit(X, y)  # (the run that chose, as it ended)
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    assert clf.state_.validation is not None and clf.state_.config.validation_fraction == 0.2
    assert clf.best_n_units_ == clf.n_hidden_units_ and len(clf.validation_scores_) == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.n_iter_ == clf.state_.counters.epoch
    small = CascorClassifier(random_state=0).fit(X[:200], y[:200])
    assert small.state_.validation is None and small.validation_scores_ is None and not small.refitted_
    with pytest.raises(ValueError, match="early_stopping"):
        CascorClassifier(early_stopping="yes").fit(X, y)


def test_a_budget_stop_predicts_with_the_best_network_seen():
    X, y = make_moons(600, noise=0.3, random_state=1)
    one = {"random_state": 0, "n_iter_no_change": 0, "max_units": 12, "n_estimators": 1}
    full = CascorClassifier(**one).fit(X, y)
    cut = CascorClassifier(**one, max_epochs=full.n_iter_ // 2).fit(X, y)
    assert not cut.state_.done and cut.network_.n_hidden == cut.best_n_units_ <= cut.state_.network.n_hidden
    scores = cut.validation_scores_
    assert cut.best_validation_score_ == max(scores)


def test_cross_entropy_outputs_give_probabilities_and_decision_function_agrees():
    from sklearn.datasets import load_iris

    from cascor.config import preset
    from cascor.errors import ConfigError

    X, y = load_iris(return_X_y=True)
    clf = CascorClassifier(output_loss="cross_entropy", random_state=0, max_units=4).fit(X, y)
    assert clf.network_.output_activation == "softmax"
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    from scipy.special import expit, softmax

    d = clf.decision_function(X)
    np.testing.assert_allclose(p, softmax(d, axis=1), rtol=1e-9, atol=1e-12)  # the network's softmax, no clipping
    np.testing.assert_array_equal(clf.classes_[d.argmax(axis=1)], clf.predict(X))
    binary = CascorClassifier(output_loss="cross_entropy", random_state=0, max_units=3).fit(X[:100], y[:100])
    assert binary.network_.output_activation == "asymmetric_sigmoid"
    d = binary.decision_function(X[:100])
    np.testing.assert_array_equal(binary.classes_[(d > 0).astype(int)], binary.predict(X[:100]))
    np.testing.assert_allclose(binary.predict_proba(X[:100])[:, 1], expit(d), rtol=1e-9, atol=1e-12)
    with pytest.raises(ConfigError, match="cross_entropy"):
        preset("default").replace(output_activation="softmax")
    with pytest.raises(ConfigError, match="asymmetric_sigmoid or softmax"):
        preset("default").replace(output_loss="cross_entropy")


def test_warm_start_grows_further_when_max_units_rises_and_refuses_other_changes():
    X, y = make_moons(200, noise=0.2, random_state=0)
    clf = CascorClassifier(max_units=2, random_state=0, warm_start=True).fit(X, y)
    assert clf.state_.status == "max_units" and clf.n_hidden_units_ == 2
    clf.set_params(max_units=5).fit(X, y)
    assert clf.n_hidden_units_ > 2 and clf.state_.config.max_units == 5
    # the first two units are the ones fitted before
    again = CascorClassifier(max_units=2, random_state=0, n_estimators=1).fit(X, y)  # (one run, as a warm start)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(clf.network_.units, again.network_.units))
    clf.set_params(pool_size=4)
    with pytest.raises(ValueError, match="'pool_size' changed from 32 to 4"):
        clf.fit(X, y)
    clf.set_params(pool_size=None, max_units=3)
    with pytest.raises(ValueError, match="max_units can only grow"):
        clf.fit(X, y)


def test_sample_weight_ones_is_unweighted_and_integer_weights_repeat_rows():
    X, y = make_moons(200, noise=0.3, random_state=0)
    plain = CascorClassifier(random_state=0, max_units=3, early_stopping=False).fit(X, y)
    ones = CascorClassifier(random_state=0, max_units=3, early_stopping=False).fit(X, y, sample_weight=np.ones(200))
    np.testing.assert_array_equal(plain.network_.output_weights.numpy(), ones.network_.output_weights.numpy())
    assert plain.state_.data_digest == ones.state_.data_digest
    # the default with held-out data (5 cascades, each validated on its weighted out-of-bag rows)
    X4, y4 = make_moons(400, noise=0.3, random_state=0)
    plain = CascorClassifier(random_state=0, max_units=2).fit(X4, y4)
    ones = CascorClassifier(random_state=0, max_units=2).fit(X4, y4, sample_weight=np.ones(400))
    assert plain.n_estimators_ == ones.n_estimators_ == 5 and plain.oob_score_ == ones.oob_score_
    np.testing.assert_array_equal(plain.predict_proba(X4), ones.predict_proba(X4))
    balanced = CascorClassifier(random_state=0, max_units=2, class_weight="balanced").fit(X4[:350], y4[:350])
    assert balanced.members_[0].validation.n_patterns > 0 and 0.5 < balanced.oob_score_ <= 1
    # weight 2 on the first 50 rows == those rows twice, up to float rounding: compared after the
    # first output phase and a few candidate epochs (later, quickprop amplifies rounding)
    w = np.ones(200)
    w[:50] = 2
    Xr, yr = np.concatenate([X, X[:50]]), np.concatenate([y, y[:50]])
    probe = CascorClassifier(random_state=0, max_units=1, early_stopping=False).fit(X, y, sample_weight=w)
    ep = probe.history_["epochs"]
    stop = ep["epoch"][ep["phase"].index(1)] + 2  # 3 candidate epochs into the first round
    a = CascorClassifier(random_state=0, max_units=1, max_epochs=stop, early_stopping=False).fit(X, y, sample_weight=w)
    b = CascorClassifier(random_state=0, max_units=1, max_epochs=stop, early_stopping=False).fit(Xr, yr)
    ea, eb = (np.asarray(e.history_["epochs"]["true_error"]) for e in (a, b))
    np.testing.assert_allclose(ea, eb, rtol=1e-5)
    assert a.state_.phase.name == "candidates" and a.state_.counters.epoch == stop
    np.testing.assert_allclose(a.state_.pool.scores.numpy(), b.state_.pool.scores.numpy(), atol=1e-4)
    # zero weight: the row does not count; class_weight multiplies the weights
    clf = CascorClassifier(random_state=0, max_units=2, class_weight="balanced", early_stopping=False)
    assert "class_weight" in clf.get_params()
    clf.fit(X[:150], y[:150])
    with pytest.raises(Exception, match="sample_weight"):
        CascorClassifier(max_units=1).fit(X, y, sample_weight=-np.ones(200))


def test_rows_weighted_near_zero_do_not_keep_a_run_growing():
    """A run is solved once its wrong rows weigh less than half a row of weight 1: ten mislabelled
    rows keep an unweighted run growing to its limit, but not when they weigh 1e-4 each."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    y[:10] = 1 - y[:10]
    w = np.ones(100)
    w[:10] = 1e-4
    kw = dict(random_state=0, max_units=6, early_stopping=False)
    grown = CascorClassifier(**kw).fit(X, y)
    light = CascorClassifier(**kw).fit(X, y, sample_weight=w)
    assert grown.state_.status == "max_units" and grown.n_hidden_units_ == 6
    assert light.state_.status == "solved" and light.n_hidden_units_ < 6
    assert light.state_.counters.error_bits > 0  # the light rows are still wrong, and counted
    assert np.mean(light.predict(X[10:]) == y[10:]) == 1.0


def test_average_is_one_cascade_whose_net_inputs_are_the_members_mean():
    import torch

    from cascor.errors import StateError
    from cascor.network import average

    ds = two_spirals()
    members = [CascorClassifier(random_state=k, max_units=3, n_estimators=1, early_stopping=False).fit(ds.X, ds.y)
               for k in range(3)]
    nets = [m.network_ for m in members]
    avg = average(nets)
    assert avg.n_hidden == sum(n.n_hidden for n in nets) and avg.output_activation == nets[0].output_activation
    X = torch.as_tensor(ds.X)
    with torch.no_grad():
        values = avg.values(X, torch.float64)
        mean = sum(n.values(X, torch.float64) @ n.output_weights.t().double() for n in nets) / 3
        np.testing.assert_allclose((values @ avg.output_weights.t().double()).numpy(), mean.numpy(), atol=1e-5)
        col = 3 + nets[0].n_hidden  # the second member's first unit: its own column, unchanged
        np.testing.assert_array_equal(values[:, col].numpy(), nets[1].values(X, torch.float64)[:, 3].numpy())
    wider = CascorClassifier(random_state=0, max_units=1, n_estimators=1).fit(np.hstack([ds.X, ds.X]), ds.y)
    with pytest.raises(StateError, match="same inputs"):
        average([nets[0], wider.network_])


def test_small_data_averages_bootstrap_cascades_and_everything_reads_the_average(tmp_path):
    """n_estimators='auto': data too small to hold a share out (two-spirals, 194 rows) averages
    AUTO_ENSEMBLE cascades, each on a bootstrap resample; predict, predict_proba and the export
    all use the one averaged network; a fit is a function of its seed."""
    from cascor.exporters.model import model_from
    from cascor.sklearn import AUTO_ENSEMBLE, AUTO_ENSEMBLE_HELD_OUT, AUTO_ENSEMBLE_MAX_SAMPLES

    ds = two_spirals()
    clf = CascorClassifier(random_state=1, max_units=4).fit(ds.X, ds.y)
    assert clf.n_estimators_ == AUTO_ENSEMBLE == len(clf.members_)
    assert len({m.data_digest for m in clf.members_}) == AUTO_ENSEMBLE  # every member its own resample
    assert clf.n_hidden_units_ == sum(m.network.n_hidden for m in clf.members_) == clf.network_.n_hidden
    import torch

    rows = torch.as_tensor(ds.X, dtype=torch.float64)
    mean = np.mean([m.best_network().values(rows, torch.float64).numpy()
                    @ m.best_network().output_weights.double().numpy().T for m in clf.members_], axis=0)
    np.testing.assert_allclose(clf.decision_function(ds.X), mean[:, 0], atol=1e-5)
    p = clf.predict_proba(ds.X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(model_from(clf).predict_proba(ds.X), p, atol=1e-9)
    again = CascorClassifier(random_state=1, max_units=4).fit(ds.X, ds.y)
    np.testing.assert_array_equal(again.predict_proba(ds.X), p)
    with pytest.raises(ValueError, match=f"averages {AUTO_ENSEMBLE} cascades"):
        clf.save_snapshot(str(tmp_path / "x.h5"))
    # held-out data (>= 300 rows): AUTO_ENSEMBLE_HELD_OUT for the classifier, one cascade for the
    # regressor, past AUTO_ENSEMBLE_MAX_SAMPLES, and for an explicit early_stopping, a paper preset
    # or a warm start
    X, y = make_moons(300, noise=0.2, random_state=0)
    assert CascorClassifier(random_state=0, max_units=1).fit(X, y).n_estimators_ == AUTO_ENSEMBLE_HELD_OUT
    assert CascorRegressor(random_state=0, max_units=1).fit(X, y.astype(float)).n_estimators_ == 1
    for kw in ({"early_stopping": False}, {"preset": "cascor1c"}, {"warm_start": True}):
        assert CascorClassifier(random_state=0, max_units=1, **kw).fit(X[:100], y[:100]).n_estimators_ == 1, kw
    big = CascorClassifier()
    assert big._n_members(AUTO_ENSEMBLE_MAX_SAMPLES) == AUTO_ENSEMBLE_HELD_OUT
    assert big._n_members(AUTO_ENSEMBLE_MAX_SAMPLES + 1) == 1
    for bad in (0, -1, 2.5, True, "some"):
        with pytest.raises(ValueError, match="n_estimators"):
            CascorClassifier(n_estimators=bad).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="warm_start continues one run"):
        CascorClassifier(n_estimators=2, warm_start=True).fit(X[:50], y[:50])


def _oob_predictions(est, X, n):
    """An averaged fit's out-of-bag outputs the long way: rows grouped by the set of members that
    did not draw them, each group predicted by cascor.network.average of those members (one
    network per group). Returns (rows, outputs), rows ascending."""
    import torch

    from cascor.seeds import derived_seed
    from cascor.network import average

    left_out = np.zeros((n, est.n_estimators_), dtype=bool)
    for k in range(est.n_estimators_):
        left_out[np.setdiff1d(np.arange(n), np.random.default_rng(derived_seed(est.seed_, 5, k)).integers(0, n, n)), k] = True
    index, pred = [], []
    for pattern in {tuple(r) for r in left_out if r.any()}:
        rows = np.flatnonzero((left_out == pattern).all(axis=1))
        net = average([m.best_network() for m, out in zip(est.members_, pattern) if out])
        with torch.no_grad():
            pred.append(net(torch.as_tensor(X[rows], dtype=torch.float64), torch.float64).numpy())
        index.append(rows)
    index = np.concatenate(index)
    order = np.argsort(index)
    return index[order], np.concatenate(pred)[order]


def _oob_by_subsets(est, X, y, n, score):
    """oob_score_ the long way (:func:`_oob_predictions`)."""
    rows, pred = _oob_predictions(est, X, n)
    return score(y[rows], pred)


def test_an_averaged_fit_chooses_its_pool_by_the_averages_out_of_bag_log_loss():
    """An averaged fit with held-out data (candidate_activations='auto') fits the members with
    each pool (each pool's own input_l2 chosen on member 0's rows) and keeps the preset's pool
    unless the other average's out-of-bag log-loss is clearly lower (POOL_SWITCH_Z standard
    errors of the paired per-row difference): checked against the fits given each pool, their
    out-of-bag outputs computed the long way; the fit is exactly the one given the chosen pool.
    Here the Gaussian pool's is clearly lower (z ~5.8); the rule's other side is the single
    fit's test (test_validation), the same `clearly_lower`."""
    from sklearn.datasets import make_classification
    from sklearn.metrics import log_loss

    from cascor.config import preset
    from cascor.sklearn import ALTERNATIVE_POOL, POOL_SWITCH_Z

    X, y = make_classification(1000, n_features=8, n_informative=4, n_classes=3, random_state=2)
    kw = {"random_state": 0, "max_units": 6}
    auto = CascorClassifier(**kw).fit(X, y)
    assert auto.n_estimators_ == 5
    mixed = preset("default").candidate_activations
    given, per_row = {}, {}
    for pool in (mixed, ALTERNATIVE_POOL):
        given[pool] = CascorClassifier(candidate_activations=list(pool), **kw).fit(X, y)
        rows, proba = _oob_predictions(given[pool], X.astype(np.float32), len(X))  # (as the fit sees X)
        per_row[pool] = np.array([log_loss([t], [q], labels=[0, 1, 2]) for t, q in zip(y[rows], proba)])
    # (the average of weights vs of net inputs: equal up to float64 rounding)
    assert auto.pool_losses_ == pytest.approx({",".join(p): v.mean() for p, v in per_row.items()}, rel=1e-8)
    gain = per_row[mixed] - per_row[ALTERNATIVE_POOL]
    assert gain.mean() > POOL_SWITCH_Z * gain.std() / np.sqrt(len(gain))
    chosen = ALTERNATIVE_POOL
    assert auto.candidate_activations_ == chosen and {m.config.candidate_activations for m in auto.members_} == {chosen}
    assert auto.input_l2_scores_ == given[chosen].input_l2_scores_ and given[chosen].pool_losses_ is None
    np.testing.assert_array_equal(auto.predict_proba(X), given[chosen].predict_proba(X))
    assert auto.oob_score_ == given[chosen].oob_score_
    # a callback sees the chosen ensemble's runs (run again for it): the same fit
    seen = []
    watched = CascorClassifier(**kw).fit(X, y, callbacks=[lambda engine, event: seen.append(engine.state.config)])
    assert {cfg.candidate_activations for cfg in seen} == {chosen} and watched.pool_losses_ == auto.pool_losses_
    np.testing.assert_array_equal(watched.predict_proba(X), auto.predict_proba(X))


def test_an_averaged_fit_with_held_out_data_validates_each_member_on_its_out_of_bag_rows():
    """Each member validates on the rows its resample did not draw; ``oob_score_`` scores the
    average on those rows (each row by the members that left it out)."""
    from sklearn.metrics import accuracy_score, r2_score

    from cascor.seeds import derived_seed

    X, y = make_moons(400, noise=0.3, random_state=0)
    reg = CascorRegressor(random_state=0, n_estimators=3, max_units=3).fit(X, y.astype(float))
    for k, member in enumerate(reg.members_):
        v = member.validation
        assert v is not None and v.index is None  # separate held-out rows: the out-of-bag ones
        drawn = np.random.default_rng(derived_seed(reg.seed_, 5, k)).integers(0, 400, 400)
        assert v.n_patterns == 400 - len(np.unique(drawn))
        assert member.config.refit is False
    assert np.isfinite(reg.predict(X)).all()
    ys = (y - y.mean()) / y.std()  # (the regressor's standardised targets: R^2 is the same)
    expected = _oob_by_subsets(reg, X, ys[:, None], 400, r2_score)
    assert 0.3 < reg.oob_score_ and reg.oob_score_ == pytest.approx(expected, abs=1e-7)  # (float32 targets)
    clf = CascorClassifier(random_state=0, max_units=3).fit(X, y)  # 'auto': 5 members with held-out data
    expected = _oob_by_subsets(clf, X, y, 400, lambda t, p: accuracy_score(t, (p[:, 0] > 0.5).astype(int)))
    assert clf.n_estimators_ == 5 and 0.7 < clf.oob_score_ == expected
    assert CascorClassifier(random_state=0, max_units=3, n_estimators=1).fit(X, y).oob_score_ is None


def test_verbose_prints_a_line_per_unit_naming_the_cascade_and_the_average(capsys):
    """verbose=1: a line per installed unit on stderr; an averaged fit names the member cascade of
    each line and ends with the average (units, out-of-bag score); one cascade names none."""
    X, y = make_moons(400, noise=0.3, random_state=0)
    clf = CascorClassifier(random_state=0, max_units=2, verbose=1).fit(X, y)
    err = capsys.readouterr().err.splitlines()
    for k in range(1, clf.n_estimators_ + 1):
        mine = [line for line in err if f"[cascade {k}/{clf.n_estimators_}]" in line]
        assert mine and "unit 1 installed" in mine[0] and "done (" in mine[-1], err
    assert err[-1] == (f"CascorClassifier: averaged {clf.n_estimators_} cascades, {clf.n_hidden_units_} units, "
                       f"out-of-bag score {clf.oob_score_:.4f}")
    CascorClassifier(random_state=0, max_units=1, verbose=1, n_estimators=1).fit(X, y)
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("CascorClassifier: epoch ") for line in err), err
