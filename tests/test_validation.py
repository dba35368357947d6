"""Held-out data: the split, early stopping, rollback to the best prefix, numerical safety."""

import numpy as np
import pytest
import torch
from cliutil import cascor_here, last_json
from sklearn.datasets import make_moons

from cascor import snapshot, trainer
from cascor.config import preset
from cascor.datasets import encode_targets
from cascor.errors import DataError, DivergedError
from cascor.validation import split_indices

CLF = {"task": "classification", "classes": [0, 1]}


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(600, noise=0.3, random_state=0)
    return X.astype(np.float32), encode_targets(y, np.array([0, 1]), -0.5, 0.5), y


def test_split_is_deterministic_stratified_and_seeded():
    y = np.array([0] * 90 + [1] * 10)
    train, val = split_indices(100, 0.2, seed=7, strata=y)
    again = split_indices(100, 0.2, seed=7, strata=y)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert len(val) == 20 and sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.all(np.diff(train) > 0)  # training rows keep the data's order
    assert np.sum(y[val] == 1) == 2  # the 9:1 class ratio holds in the held-out rows
    other = split_indices(100, 0.2, seed=8, strata=y)[1]
    assert not np.array_equal(np.sort(val), np.sort(other))
    # a class too small to stratify falls back to a plain split instead of failing
    tiny = np.array([0] * 99 + [1])
    assert len(split_indices(100, 0.2, seed=7, strata=tiny)[1]) == 20
    with pytest.raises(DataError, match="need at least one of each"):
        split_indices(1, 0.5, seed=0)


def test_early_stop_rolls_back_to_exactly_the_best_prefix(moons):
    X, Y, _ = moons
    cfg = preset("default").replace(seed=3, validation_fraction=0.25, n_iter_no_change=3, max_units=30)
    seen = {}  # output weights at every output phase end, by unit count

    def remember(engine, event):
        scores = engine.state.history.scores
        if len(scores["hidden_units"]) > len(seen):
            net = engine.state.network
            seen[scores["hidden_units"][-1]] = ([u.weights.clone() for u in net.units],
                                               net.output_weights.clone())

    eng = trainer.start(cfg, X, Y, targets=CLF)
    trainer.run(eng, callbacks=[remember])
    st = eng.state
    v = st.validation
    grown = max(st.history.scores["hidden_units"])
    assert st.status == "early_stopped" and grown == v.best_n_units + cfg.n_iter_no_change
    assert st.network.n_hidden == v.best_n_units < grown
    # The final network is the one the run had at its best phase end, bit for bit.
    units, weights = seen[v.best_n_units]
    assert all(torch.equal(a.weights, b) for a, b in zip(st.network.units, units))
    assert torch.equal(st.network.output_weights, weights)
    # ... and it is the best on the held-out rows among all phase ends.
    val = st.history.scores["val_score"]
    assert v.best_score == max(val) == val[st.history.scores["hidden_units"].index(v.best_n_units)]
    assert len(st.history.units["epoch"]) == grown  # the history keeps the units it dropped


def test_held_out_rows_are_never_trained_on(moons):
    """Changing a held-out target changes the validation scores but not one training step."""
    X, Y, _ = moons
    cfg = preset("default").replace(seed=4, validation_fraction=0.25, n_iter_no_change=0, max_units=3)
    a = trainer.start(cfg, X, Y, targets=CLF)
    trainer.run(a)
    Y2 = Y.copy()
    Y2[a.state.validation.index[:20]] *= 0.5  # same classes (so the same stratified split), other targets
    b = trainer.start(cfg, X, Y2, targets=CLF)
    trainer.run(b)
    np.testing.assert_array_equal(np.asarray(a.state.history.epochs["true_error"]),
                                  np.asarray(b.state.history.epochs["true_error"]))  # NaN == NaN here
    assert a.state.history.scores["val_loss"] != b.state.history.scores["val_loss"]


def test_a_stop_and_resume_anywhere_is_identical_with_validation(moons, tmp_path):
    X, Y, _ = moons
    cfg = preset("default").replace(seed=3, validation_fraction=0.25, n_iter_no_change=3, max_units=30)
    ref = trainer.start(cfg, X, Y, targets=CLF)
    trainer.run(ref)
    final = snapshot.save(ref.state, str(tmp_path / "ref.h5"))
    for stop in (1, ref.state.counters.epoch // 2, ref.state.counters.epoch - 1):
        eng = trainer.start(cfg, X, Y, targets=CLF)
        trainer.run(eng, stop_at_epoch=stop)
        path = str(tmp_path / f"s{stop}.h5")
        snapshot.save(eng.state, path)
        resumed = trainer.resume(snapshot.load(path).state, X, Y)
        trainer.run(resumed)
        assert snapshot.save(resumed.state, str(tmp_path / "r.h5")) == final, stop
    with pytest.raises(DataError, match="started on 600 patterns"):
        trainer.resume(snapshot.load(path).state, X[:500], Y[:500])


def test_separate_validation_data_is_checked_on_resume(moons, tmp_path):
    X, Y, _ = moons
    cfg = preset("default").replace(seed=1, n_iter_no_change=2, max_units=10)
    eng = trainer.start(cfg, X[:400], Y[:400], targets=CLF, validation=(X[400:], Y[400:]))
    trainer.run(eng, stop_at_epoch=150)
    path = str(tmp_path / "v.h5")
    snapshot.save(eng.state, path)
    with pytest.raises(DataError, match="validates on held-out data: pass it"):
        trainer.resume(snapshot.load(path).state, X[:400], Y[:400])
    with pytest.raises(DataError, match="validation data differs"):
        trainer.resume(snapshot.load(path).state, X[:400], Y[:400], validation=(X[400:], -Y[400:]))
    trainer.run(trainer.resume(snapshot.load(path).state, X[:400], Y[:400], validation=(X[400:], Y[400:])))


def test_paper_presets_are_unchanged_without_validation(spirals):
    """No held-out data: the run grows as before; the score table only adds training figures."""
    X, Y = spirals
    eng = trainer.start(preset("fahlman-spirals").replace(seed=1), X, Y, targets=CLF)
    trainer.run(eng)
    st = eng.state
    assert st.status == "solved" and st.validation is None
    s = st.history.scores
    assert len(s["hidden_units"]) == st.network.n_hidden + 1 and s["train_score"][-1] == 1.0
    assert all(np.isnan(s["val_score"]))


def _robot_like():
    """PROBEN1 robot's shape: 374 rows, 48 correlated inputs, 3 targets in [-1, 1]."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(374, 4))
    X = Z @ rng.normal(size=(4, 48)) + 0.3 * rng.normal(size=(374, 48))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    return X, np.tanh(Z[:, :3] + 0.2 * rng.normal(size=(374, 3))).astype(np.float32)


def test_a_diverging_run_stops_with_a_clear_error_and_the_regressor_default_is_stable():
    from cascor.sklearn import CascorRegressor

    X, Y = _robot_like()
    cfg = preset("default").replace(output_activation="linear", error_measure="index", max_units=30)
    eng = trainer.start(cfg, X, Y)
    with pytest.raises(DivergedError, match="diverged at epoch .* lower output_epsilon"):
        trainer.run(eng)  # the classification preset's output_epsilon=1.0 on linear outputs
    reg = CascorRegressor(max_units=30, random_state=0, early_stopping=False).fit(X, Y)  # normalised step
    assert np.all(np.isfinite(reg.predict(X))) and reg.score(X, Y) > 0.5


def test_cli_validation_split_summary_and_evaluate_labels(tmp_path):
    out = tmp_path / "run"
    summary = _cli("train", "--dataset", "two-spirals", "--out", str(out), "--early-stopping", "--seed", "3")
    assert {"train_accuracy", "validation_accuracy", "test_accuracy", "best_hidden_units"} <= set(summary)
    assert summary["hidden_units"] == summary["best_hidden_units"] <= summary["grown_units"]
    scores = _cli("evaluate", str(out / "final.h5"), quiet=False)
    assert scores["validation_accuracy"] == pytest.approx(summary["validation_accuracy"])
    assert scores["train_accuracy"] == pytest.approx(summary["train_accuracy"])
    named = _cli("evaluate", str(out / "final.h5"), "--dataset", "two-spirals", quiet=False)
    assert "accuracy" in named and "train_accuracy" not in named  # data named by the user is not "train"


def test_cli_diverging_regression_is_one_line(tmp_path):
    data = tmp_path / "d.csv"
    X, Y = _robot_like()
    np.savetxt(data, np.column_stack([X, Y[:, 0]]), delimiter=",")
    proc = cascor_here("train", "--data", str(data), "--out", str(tmp_path / "o"), "--set", "output_step=patterns",
                       "--set", "output_epsilon=1.0", "-q")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: training diverged") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_plots_show_held_out_scores_and_many_classes(tmp_path):
    from sklearn.datasets import make_blobs

    from cascor.plotting import plot_boundary, plot_history, plot_network
    from cascor.sklearn import CascorClassifier

    X, y = make_blobs(400, centers=3, random_state=0)
    clf = CascorClassifier(random_state=0, max_units=4).fit(X, y)
    assert clf.validation_scores_ is not None
    for name, draw in (("history", lambda p: plot_history(clf.history_, p, chosen_units=clf.n_hidden_units_)),
                       ("boundary", lambda p: plot_boundary(clf.network_, X, y, p)),
                       ("network", lambda p: plot_network(clf.network_, p))):
        path = tmp_path / f"{name}.png"
        draw(str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_r2_is_scikit_learns():
    from sklearn.metrics import r2_score

    from cascor.validation import r2

    rng = np.random.default_rng(0)
    y, p, w = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), rng.uniform(0, 2, size=50)
    y[:, 1] += 100.0  # an offset target: pooled variances would hide it
    assert r2(torch.from_numpy(p), torch.from_numpy(y)) == pytest.approx(r2_score(y, p), rel=1e-12)
    assert r2(torch.from_numpy(p), torch.from_numpy(y), torch.from_numpy(w)) == pytest.approx(
        r2_score(y, p, sample_weight=w), rel=1e-12)
    assert np.isnan(r2(torch.zeros(5, 1), torch.ones(5, 1)))


def _moons_run(max_units=20):
    X, y = make_moons(400, noise=0.3, random_state=0)
    X = X.astype(np.float32)
    Y = encode_targets(y, np.array([0, 1]), -0.5, 0.5)
    cfg = preset("cascor1c").replace(seed=1, validation_fraction=0.2, n_iter_no_change=3, max_units=max_units)
    eng = trainer.start(cfg, X, Y, targets={"task": "classification", "classes": [0, 1]})
    trainer.run(eng)
    return eng.state, X, Y


def test_refit_trains_the_chosen_output_layer_again_on_every_row():
    from cascor.errors import StateError

    chosen, X, Y = _moons_run()
    assert chosen.validation.best_n_units == chosen.network.n_hidden  # rolled back to the chosen size
    eng = trainer.refit(chosen, X, Y)
    trainer.run(eng)
    st = eng.state
    assert st.done and st.validation is None and st.n_patterns == len(X) and st.run_id == chosen.run_id
    assert st.network.n_hidden == chosen.network.n_hidden and st.config.max_units == chosen.network.n_hidden
    for a, b in zip(st.network.units, chosen.network.units):  # the units are the chosen ones
        assert torch.equal(a.weights, b.weights)
    assert not torch.equal(st.network.output_weights, chosen.network.output_weights)  # the layer trained on
    assert st.counters.epoch > chosen.counters.epoch and len(st.history) > len(chosen.history)
    assert st.history.scores["epoch"][-1] == st.counters.epoch  # scored on all rows at its phase end
    with pytest.raises(StateError, match="held-out data"):
        trainer.refit(st, X, Y)  # (no held-out part any more)
    with pytest.raises(DataError, match="same data"):
        trainer.refit(chosen, X[:-1], Y[:-1])
    cfg = preset("cascor1c").replace(seed=1, validation_fraction=0.2)
    unfinished = trainer.start(cfg, X, Y, targets={"task": "classification", "classes": [0, 1]})
    trainer.run(unfinished, stop_at_epoch=10)
    with pytest.raises(StateError, match="finished run"):
        trainer.refit(unfinished.state, X, Y)


def test_a_refit_stopped_midway_resumes_bit_exactly(tmp_path):
    chosen, X, Y = _moons_run()
    whole = trainer.refit(chosen, X, Y)
    trainer.run(whole)
    part = trainer.refit(chosen, X, Y)
    trainer.run(part, stop_at_epoch=chosen.counters.epoch + 3)
    assert not part.state.done
    path = str(tmp_path / "refit.h5")
    snapshot.save(part.state, path)
    cont = trainer.resume(snapshot.load(path).state, X, Y)  # all rows: the refit has no held-out part
    trainer.run(cont)
    assert torch.equal(cont.state.network.output_weights, whole.state.network.output_weights)
    assert cont.state.counters.epoch == whole.state.counters.epoch
    np.testing.assert_equal(cont.state.history.to_dict(), whole.state.history.to_dict())  # (NaN-aware)


def test_estimator_refit_keeps_the_chosen_size_and_units():
    from cascor import CascorClassifier

    X, y = make_moons(600, noise=0.3, random_state=2)
    plain = CascorClassifier(random_state=3, refit=False, n_estimators=1).fit(X, y)
    refit = CascorClassifier(random_state=3, n_estimators=1).fit(X, y)  # refit='auto': refit unless warm_start
    assert refit.refitted_ and not plain.refitted_
    assert refit.best_n_units_ == plain.best_n_units_ == refit.n_hidden_units_
    assert refit.validation_scores_ == plain.validation_scores_
    for a, b in zip(refit.network_.units, plain.network_.units):
        assert torch.equal(a.weights, b.weights)
    assert not np.array_equal(refit.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_allclose(refit.predict_proba(X).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="cannot grow further"):
        refit.set_params(warm_start=True, max_units=60).fit(X, y)
    warm = CascorClassifier(random_state=3, warm_start=True).fit(X, y)  # 'auto' keeps it growable
    assert not warm.refitted_ and warm.best_n_units_ == plain.best_n_units_
    with pytest.raises(ValueError, match="'refit' parameter"):
        CascorClassifier(refit="yes").fit(X, y)


def _cli(*args, quiet=True):
    """``cascor ARGS --json`` in this process (cliutil): its JSON summary."""
    return last_json(cascor_here(*args, "--json", *(["-q"] if quiet else []), check=True))


def test_cli_refits_by_default_reports_the_chosen_networks_held_out_score_and_resumes_identically(tmp_path):
    common = ["--dataset", "two-spirals", "--validation-fraction", "0.25", "--seed", "2"]
    kept = _cli("train", *common, "--no-refit", "--out", str(tmp_path / "kept"))
    whole = _cli("train", *common, "--out", str(tmp_path / "whole"))
    assert "refitted" not in kept and whole["refitted"]
    # The same network was chosen; the refit run reports its held-out figure from before the refit.
    assert whole["best_hidden_units"] == kept["best_hidden_units"] == whole["hidden_units"]
    assert whole["validation_accuracy"] == kept["validation_accuracy"]
    assert whole["chosen_status"] == kept["status"]
    refit_state = snapshot.load(whole["snapshot"]).state
    kept_state = snapshot.load(kept["snapshot"]).state
    assert refit_state.validation is None and refit_state.config.refit
    assert kept_state.validation is not None and not kept_state.config.refit
    for a, b in zip(refit_state.network.units, kept_state.network.units):
        assert torch.equal(a.weights, b.weights)
    # Stopped during growth, and exactly where growth ends (the refit not begun): each resume
    # refits and ends on the uninterrupted run's very network.
    for stop in (40, kept["epochs"]):
        out = tmp_path / f"stop{stop}"
        part = _cli("train", *common, "--stop-after", str(stop), "--out", str(out))
        assert not part["finished"] or part["epochs"] == stop
        done = _cli("resume", part["snapshot"], "--out", str(out))
        assert done["refitted"] and done["validation_accuracy"] == whole["validation_accuracy"]
        st = snapshot.load(done["snapshot"]).state
        assert torch.equal(st.network.output_weights, refit_state.network.output_weights)
        assert st.counters.epoch == refit_state.counters.epoch
    # evaluate labels the refit network's figures: all rows are training rows now
    scores = _cli("evaluate", whole["snapshot"], quiet=False)
    assert scores["refitted"] and scores["validation_accuracy"] == whole["validation_accuracy"]
    assert scores["train_accuracy"] == pytest.approx(whole["train_accuracy"])
    proc = cascor_here("train", "--dataset", "iris", "--refit", "--out", str(tmp_path / "none"))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: --refit needs held-out")


def test_a_run_validated_on_separate_data_refits_on_both(moons):
    X, Y, _ = moons
    cfg = preset("default").replace(seed=1, n_iter_no_change=2, max_units=10, refit=True)
    eng = trainer.start(cfg, X[:400], Y[:400], targets=CLF, validation=(X[400:], Y[400:]))
    trainer.run(eng)
    chosen = eng.state
    assert trainer.refit_pending(chosen)
    with pytest.raises(DataError, match="separate held-out data"):
        trainer.refit(chosen, X[:400], Y[:400])
    with pytest.raises(DataError, match="same data"):
        trainer.refit(chosen, X[:400], Y[:400], validation=(X[400:-1], Y[400:-1]))
    both = trainer.refit(chosen, X[:400], Y[:400], validation=(X[400:], Y[400:]))
    trainer.run(both)
    assert both.state.n_patterns == len(X) and both.state.validation is None and not trainer.refit_pending(both.state)
    assert both.state.refitted and both.state.best_n_units == chosen.network.n_hidden
    assert not torch.equal(both.state.network.output_weights, chosen.network.output_weights)  # trained on
    # the refit run resumes on the rows put together (its data digest covers all of them)
    with pytest.raises(DataError):
        trainer.resume(both.state, X[:400], Y[:400])
    trainer.resume(both.state, X, Y)


@pytest.mark.parametrize("members", [1, "auto"])
def test_input_l2_auto_chooses_on_the_held_out_rows(moons, members):
    """input_l2='auto' fits once per grid value on the same held-out rows (an averaged fit: member
    0's out-of-bag rows, the value then shared by every member) and keeps the best held-out
    score: the result is exactly the fit with the chosen value; with a callback (the chosen run
    is trained again, for the callback to see) it is the same; a warm start keeps it."""
    from sklearn.datasets import make_classification

    from cascor.sklearn import AUTO_ENSEMBLE_HELD_OUT, INPUT_L2_GRID, CascorClassifier

    X, y = make_classification(1000, n_features=8, n_informative=4, n_classes=3, random_state=1)
    # (the pool held fixed: its choice is the next test's)
    kw = {"random_state": 0, "max_units": 6, "n_estimators": members,
          "candidate_activations": list(preset("default").candidate_activations)}
    fixed = {lam: CascorClassifier(input_l2=lam, **kw).fit(X, y) for lam in INPUT_L2_GRID}
    auto = CascorClassifier(input_l2="auto", **kw).fit(X, y)
    assert auto.n_estimators_ == (1 if members == 1 else AUTO_ENSEMBLE_HELD_OUT)
    assert {m.config.input_l2 for m in auto.members_} == {auto.input_l2_}
    scores = {lam: est.best_validation_score_ for lam, est in fixed.items()}  # (member 0's)
    assert auto.input_l2_scores_ == scores
    best = max(scores.values())
    assert auto.input_l2_ == min(lam for lam in INPUT_L2_GRID if scores[lam] == best)
    np.testing.assert_array_equal(auto.predict_proba(X), fixed[auto.input_l2_].predict_proba(X))
    seen = []
    watched = CascorClassifier(input_l2="auto", **kw).fit(X, y, callbacks=[lambda engine, event: seen.append(event) and None])
    assert seen and watched.input_l2_ == auto.input_l2_
    np.testing.assert_array_equal(watched.predict_proba(X), auto.predict_proba(X))
    if members != 1:
        return
    grown = CascorClassifier(random_state=0, input_l2="auto", max_units=2, warm_start=True).fit(X, y)
    chosen = grown.input_l2_
    grown.set_params(max_units=4).fit(X, y)  # a continued run keeps the value it chose
    assert grown.input_l2_ == chosen and grown.state_.config.max_units == 4


@pytest.mark.parametrize("z", [None, 0.0])
def test_candidate_pool_auto_chooses_on_the_held_out_log_loss(monkeypatch, z):
    """candidate_activations='auto' (the estimators' default on the default preset; one cascade
    here, an averaged fit in test_sklearn) chooses input_l2 for the preset's pool and for
    Gaussian units on the same held-out rows and keeps the preset's pool unless the other's
    chosen network has a clearly lower held-out log-loss (by POOL_SWITCH_Z standard errors of the
    paired per-row difference; None: the library's threshold, under which 200 rows do not make
    Gaussian units' lower loss clear here; 0: any lower mean switches): the fit is exactly the one
    given that pool, and the scores are the log-losses computed here."""
    from sklearn.datasets import make_classification
    from sklearn.metrics import log_loss

    import cascor.sklearn as sk
    from cascor.estimators import choice

    if z is not None:
        monkeypatch.setattr(choice, "POOL_SWITCH_Z", z)
    X, y = make_classification(1000, n_features=8, n_informative=4, n_classes=3, random_state=3)
    kw = {"random_state": 0, "max_units": 6, "n_estimators": 1, "refit": False}
    mixed = preset("default").candidate_activations
    auto = sk.CascorClassifier(**kw).fit(X, y)
    rows = auto.state_.validation.index
    expected, per_row = {}, {}
    for pool in (mixed, sk.ALTERNATIVE_POOL):
        state = sk.CascorClassifier(candidate_activations=list(pool), **kw).fit(X, y).state_
        with torch.no_grad():
            proba = state.best_network()(torch.as_tensor(X[rows].astype(np.float32)), dtype=torch.float64).numpy()
        expected[pool] = log_loss(y[rows], proba, labels=[0, 1, 2])
        per_row[pool] = np.array([log_loss([t], [q], labels=[0, 1, 2]) for t, q in zip(y[rows], proba)])
    assert auto.pool_losses_ == pytest.approx({",".join(p): v for p, v in expected.items()}, rel=1e-12)
    gain = per_row[mixed] - per_row[sk.ALTERNATIVE_POOL]
    assert gain.mean() > 0  # Gaussian units fit these held-out rows better on average
    clear = gain.mean() > choice.POOL_SWITCH_Z * gain.std() / np.sqrt(len(gain))
    assert clear == (z is not None)
    chosen = sk.ALTERNATIVE_POOL if clear else mixed
    assert auto.candidate_activations_ == chosen
    given = sk.CascorClassifier(candidate_activations=list(chosen), **kw).fit(X, y)
    assert given.pool_losses_ is None and given.input_l2_scores_ == auto.input_l2_scores_
    np.testing.assert_array_equal(auto.predict_proba(X), given.predict_proba(X))


def test_candidate_pool_auto_is_kept_by_a_warm_start(monkeypatch):
    """A continued run keeps the pool it chose (it is not chosen again, nor refused as a changed
    parameter)."""
    from sklearn.datasets import make_classification

    import cascor.sklearn as sk
    from cascor.estimators import choice

    monkeypatch.setattr(choice, "POOL_SWITCH_Z", -1e9)  # (any held-out loss switches: Gaussian units)
    X, y = make_classification(1000, n_features=8, n_informative=4, n_classes=3, random_state=1)
    grown = sk.CascorClassifier(random_state=0, max_units=2, warm_start=True).fit(X, y)
    assert grown.candidate_activations_ == sk.ALTERNATIVE_POOL
    grown.set_params(max_units=4).fit(X, y)
    assert grown.candidate_activations_ == sk.ALTERNATIVE_POOL and grown.state_.config.max_units == 4


def test_candidate_pool_auto_keeps_the_presets_pool_on_a_tie_and_where_nothing_is_chosen():
    """A tie (no unit may be installed: both pools' networks are the same linear model) keeps the
    preset's pool; so do a paper preset, an explicit pool, and too few held-out rows (no choice,
    no extra run). The regressor compares held-out squared errors."""
    from sklearn.datasets import make_classification, make_regression

    from cascor.sklearn import ALTERNATIVE_POOL, CascorClassifier, CascorRegressor

    mixed = preset("default").candidate_activations
    Xr, yr = make_regression(1000, n_features=4, noise=5.0, random_state=0)
    reg = CascorRegressor(random_state=0, max_units=0).fit(Xr, yr)
    assert reg.pool_losses_[",".join(mixed)] == reg.pool_losses_[",".join(ALTERNATIVE_POOL)]
    assert reg.candidate_activations_ == mixed
    X, y = make_classification(1000, n_features=8, n_informative=4, n_classes=3, random_state=1)
    paper = CascorClassifier("cascor1c", random_state=0, max_units=2, n_estimators=1).fit(X, y)
    assert paper.pool_losses_ is None and paper.candidate_activations_ == preset("cascor1c").candidate_activations
    given = CascorClassifier(random_state=0, max_units=2, n_estimators=1, candidate_activations=["gaussian"]).fit(X, y)
    assert given.pool_losses_ is None and given.candidate_activations_ == ("gaussian",)
    few = CascorClassifier(random_state=0, max_units=2, n_estimators=1).fit(X[:995], y[:995])  # 199 held out
    assert few.validation_scores_ and few.pool_losses_ is None and few.candidate_activations_ == mixed


def test_input_l2_auto_without_held_out_data_is_off(spirals):
    from cascor.sklearn import CascorClassifier

    X, Y = spirals
    y = Y[:, 0] > 0
    auto = CascorClassifier(random_state=0, input_l2="auto", max_units=4).fit(X, y)
    off = CascorClassifier(random_state=0, input_l2=0.0, max_units=4).fit(X, y)
    assert auto.input_l2_ == 0.0 and auto.input_l2_scores_ is None
    np.testing.assert_array_equal(auto.predict_proba(X), off.predict_proba(X))


def test_input_l2_auto_is_the_default_preset_estimators_default(monkeypatch):
    """On the ``default`` preset the estimators choose input_l2 on the held-out rows unless told
    otherwise (the same fit as input_l2='auto'); a paper preset keeps its own value and tries
    nothing; with fewer than INPUT_L2_AUTO_MIN_HELD_OUT held-out rows or more than
    INPUT_L2_AUTO_MAX_SAMPLES samples the choice is skipped (0)."""
    from sklearn.datasets import make_classification, make_regression

    import cascor.sklearn as sk
    from cascor.estimators import choice

    X, y = make_classification(1000, n_features=6, n_informative=4, random_state=3)
    default = sk.CascorClassifier(random_state=0, max_units=3).fit(X, y)
    auto = sk.CascorClassifier(random_state=0, max_units=3, input_l2="auto").fit(X, y)
    assert default.get_params()["input_l2"] is None
    assert set(default.input_l2_scores_) == set(sk.INPUT_L2_GRID)
    assert default.input_l2_scores_ == auto.input_l2_scores_ and default.input_l2_ == auto.input_l2_
    np.testing.assert_array_equal(default.predict_proba(X), auto.predict_proba(X))
    fixed = sk.CascorClassifier(random_state=0, max_units=3, input_l2=0.03).fit(X, y)
    assert fixed.input_l2_scores_ is None and fixed.input_l2_ == 0.03
    paper = sk.CascorClassifier("cascor1c", random_state=0, max_units=3).fit(X, y)
    assert paper.input_l2_scores_ is None and paper.input_l2_ == 0.0
    Xr, yr = make_regression(1000, n_features=4, noise=5.0, random_state=0)
    reg = sk.CascorRegressor(random_state=0, max_units=3).fit(Xr, yr)
    assert set(reg.input_l2_scores_) == set(sk.INPUT_L2_GRID)
    few = sk.CascorClassifier(random_state=0, max_units=3).fit(X[:995], y[:995])  # 199 held-out rows
    assert few.validation_scores_ and few.input_l2_scores_ is None and few.input_l2_ == 0.0
    monkeypatch.setattr(choice, "INPUT_L2_AUTO_MAX_SAMPLES", 999)
    big = sk.CascorClassifier(random_state=0, max_units=3).fit(X, y)
    off = sk.CascorClassifier(random_state=0, max_units=3, input_l2=0.0).fit(X, y)
    assert big.input_l2_scores_ is None and big.input_l2_ == 0.0
    assert set(big.pool_losses_) == set(auto.pool_losses_)  # (above the cap the pool is still chosen, at 0)
    np.testing.assert_array_equal(big.predict_proba(X), off.predict_proba(X))


def test_cli_default_preset_trains_as_the_estimators_do(tmp_path):
    """`cascor train` on the default preset holds out 0.2 from 300 rows (classification) or 100
    (regression), as early_stopping='auto' does, and refits; --no-early-stopping, a paper preset
    or fewer rows hold nothing out (the paper's behaviour). It trains the estimators' outputs
    (config.RECOMMENDED: cross-entropy with a logistic unit or a softmax, output L2) unless told
    otherwise; a paper preset keeps its squared error."""
    from sklearn.datasets import make_moons, make_regression

    from cascor import snapshot

    X, y = make_moons(300, noise=0.3, random_state=0)
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    np.savetxt(big, np.column_stack([X, y]), delimiter=",")
    np.savetxt(small, np.column_stack([X[:299], y[:299]]), delimiter=",")
    Xr, yr = make_regression(100, n_features=3, noise=10.0, random_state=0)
    reg = tmp_path / "reg.csv"
    np.savetxt(reg, np.column_stack([Xr, yr]), delimiter=",")

    def train(name, *args):
        out = tmp_path / name
        summary = _cli("train", "--out", str(out), "--seed", "1", "--set", "max_units=3", *args)
        return summary, snapshot.load(str(out / "final.h5")).state

    summary, state = train("auto", "--data", str(big))
    assert summary["refitted"] and "validation_accuracy" in summary
    assert state.refitted and summary["grown_units"] >= summary["hidden_units"]  # (a refit's config holds nothing out)
    assert (state.config.output_loss, state.config.output_activation, state.config.output_l2) == \
        ("cross_entropy", "asymmetric_sigmoid", 1e-3)
    for name, args in (("off", ("--data", str(big), "--no-early-stopping")),
                       ("paper", ("--data", str(big), "--preset", "cascor1c")),
                       ("small", ("--data", str(small)))):
        summary, state = train(name, *args)
        assert "validation_accuracy" not in summary and not summary.get("refitted"), name
        assert not state.refitted and state.validation is None and state.config.validation_fraction == 0.0, name
        assert state.config.output_loss == ("squared" if name == "paper" else "cross_entropy"), name
    # what --set does to the recommended outputs (the config `cascor train` builds)
    from cascor import workflow
    from cascor.config import preset
    from cascor.datasets import load_dataset

    iris = load_dataset("iris")
    for sets, expected in (((), ("cross_entropy", "softmax")),
                           (("output_loss=squared",), ("squared", "symmetric_sigmoid")),
                           (("output_activation=tanh",), ("squared", "tanh"))):  # (tanh: chosen for squared error)
        cfg = workflow.adapt_config(preset("default").with_overrides(sets), iris,
                                    {s.partition("=")[0] for s in sets}, recommended=True)
        assert (cfg.output_loss, cfg.output_activation) == expected, sets
    summary, state = train("reg", "--data", str(reg))
    assert summary["refitted"] and "validation_r2" in summary
    assert state.config.error_index_threshold == 0.01
    assert (state.config.output_activation, state.config.output_l2) == ("linear", 1e-3)
    summary, state = train("reg-set", "--data", str(reg), "--set", "error_index_threshold=0.1")
    assert state.config.error_index_threshold == 0.1  # a value the user set stays
