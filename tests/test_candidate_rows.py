"""config.candidate_rows (format 1.6): each candidate phase trains on a random subset of the rows.

The claim checked here is the exact one: a phase on a subset is the phase a run holding only
those rows (with the same residual on them) would train, bit for bit; the rows are the run's own
draw (stream (6, unit)), so a run stopped inside such a phase resumes identically.
"""

import numpy as np
import pytest
import torch

from cascor import snapshot, trainer
from cascor.candidates import candidate_rows
from cascor.config import preset
from cascor.errors import ConfigError
from cascor.state import TrainState


def _at_candidates(cfg, X, Y, weights=None, unit=0):
    """The run as its candidate phase for hidden unit ``unit`` starts."""
    eng = trainer.start(cfg, X, Y, sample_weight=weights)
    while not (eng.state.phase.name == "candidates" and eng.state.network.n_hidden == unit):
        eng.step()
    return eng


def _install_next(eng):
    n = eng.state.network.n_hidden
    while eng.state.network.n_hidden == n:
        eng.step()
    return eng.state.network.units[n].weights


def test_rows_are_distinct_sorted_and_the_runs_own_draw():
    a = candidate_rows(7, 0, 1000, 300)
    assert a.shape == (300,) and np.all(np.diff(a) > 0) and 0 <= a[0] and a[-1] < 1000
    assert np.array_equal(a, candidate_rows(7, 0, 1000, 300))  # a resumed phase draws the same rows
    assert not np.array_equal(a, candidate_rows(7, 1, 1000, 300))  # every unit draws afresh
    assert not np.array_equal(a, candidate_rows(8, 0, 1000, 300))
    assert candidate_rows(7, 0, 1000, 0) is None and candidate_rows(7, 0, 1000, 1000) is None


def test_as_many_rows_as_the_data_is_the_run_without_a_subset(spirals):
    cfg = preset("default").replace(seed=3, max_units=4)
    a = trainer.start(cfg, *spirals)
    trainer.run(a)
    b = trainer.start(cfg.replace(candidate_rows=len(spirals[0]) + 5), *spirals)
    trainer.run(b)
    assert all(torch.equal(u.weights, v.weights) for u, v in zip(a.state.network.units, b.state.network.units))
    assert torch.equal(a.state.network.output_weights, b.state.network.output_weights)


@pytest.mark.parametrize("case", ["covariance", "weighted", "cascade2"])
def test_a_phase_on_a_subset_is_the_phase_of_a_run_holding_only_those_rows(spirals, case):
    X, Y = spirals
    m = 120
    base = {"covariance": preset("default").replace(seed=4, input_l2=0.03),
            "weighted": preset("default").replace(seed=5, input_l2=0.03),
            "cascade2": preset("fann-cascade2").replace(seed=6, pool_size=12, candidate_block=4)}[case]
    weights = np.random.default_rng(0).integers(1, 4, len(X)).astype(np.float32) if case == "weighted" else None
    full = _at_candidates(base.replace(candidate_rows=m), X, Y, weights, unit=1)
    rows = candidate_rows(base.seed, 1, len(X), m)
    # A run of the same network on the subset alone, with the full run's residual on those rows.
    sd = full.state.state_dict()
    sd.update(config=base.to_dict(), n_patterns=m, data_digest="",
              errors=sd["errors"][rows], diffs=sd["diffs"][rows])
    sub = trainer.resume(TrainState.from_state_dict(sd), X[rows], Y[rows],
                         sample_weight=None if weights is None else weights[rows])
    assert torch.equal(_install_next(full), _install_next(sub))
    assert full.state.history.units["score"][1] == sub.state.history.units["score"][1]
    # ... and a different phase from the one on every row.
    every = _at_candidates(base, X, Y, weights, unit=1)
    assert not torch.equal(_install_next(every), full.state.network.units[1].weights)


def test_a_run_stopped_inside_a_subset_phase_resumes_bit_identically(spirals, tmp_path):
    cfg = preset("default").replace(seed=2, candidate_rows=100, max_units=5)
    whole = trainer.start(cfg, *spirals)
    trainer.run(whole)
    eng = _at_candidates(cfg, *spirals, unit=2)
    for _ in range(4):
        eng.step()
    assert eng.state.phase.name == "candidates" and eng.state.network.n_hidden == 2
    path = str(tmp_path / "mid.h5")
    snapshot.save(eng.state, path)
    loaded = snapshot.load(path).state
    assert loaded.config.candidate_rows == 100
    rest = trainer.resume(loaded, *spirals)
    trainer.run(rest)
    a, b = rest.state.network, whole.state.network
    assert a.n_hidden == b.n_hidden == 5
    assert all(torch.equal(u.weights, v.weights) for u, v in zip(a.units, b.units))
    assert torch.equal(a.output_weights, b.output_weights)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "many"])
def test_candidate_rows_must_be_a_count(bad):
    with pytest.raises(ConfigError, match="candidate_rows"):
        preset("default").replace(candidate_rows=bad)


def test_the_estimators_train_candidates_on_at_most_large_data_candidate_rows(monkeypatch):
    """candidate_rows='auto' (the estimators' default on the default preset) is
    LARGE_DATA_CANDIDATE_ROWS, a no-op on fewer rows; a paper preset keeps every row."""
    from sklearn.datasets import make_classification

    import cascor.sklearn as sk

    X, y = make_classification(600, n_features=6, n_informative=4, random_state=0)
    kw = {"random_state": 0, "max_units": 3, "n_estimators": 1}
    assert sk.CascorClassifier(**kw).fit(X, y).state_.config.candidate_rows == sk.LARGE_DATA_CANDIDATE_ROWS
    assert sk.CascorClassifier("cascor1c", **kw).fit(X, y).state_.config.candidate_rows == 0
    monkeypatch.setattr(sk, "LARGE_DATA_CANDIDATE_ROWS", 200)  # (480 training rows: a real subset)
    auto = sk.CascorClassifier(**kw).fit(X, y)
    given = sk.CascorClassifier(candidate_rows=200, **kw).fit(X, y)
    every = sk.CascorClassifier(candidate_rows=0, **kw).fit(X, y)
    assert auto.state_.config.candidate_rows == 200
    np.testing.assert_array_equal(auto.predict_proba(X), given.predict_proba(X))
    assert not np.array_equal(auto.predict_proba(X), every.predict_proba(X))
