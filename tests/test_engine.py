import numpy as np
import pytest
import torch

from cascor import trainer
from cascor.config import preset
from cascor.datasets import encode_targets, parity
from cascor.errors import DataError


def _train(cfg, X, Y):
    eng = trainer.start(cfg, X, Y)
    trainer.run(eng)
    return eng


def test_two_spirals_solved_like_the_paper(spirals, spirals_cfg):
    eng = _train(spirals_cfg, *spirals)
    st = eng.state
    assert st.status == "solved"
    assert 10 <= st.network.n_hidden <= 20  # paper: 12-19 over 100 trials
    # The win is judged on a clean pass: every output within the score threshold.
    out = eng.outputs().numpy()
    assert np.all(np.abs(out - spirals[1]) <= spirals_cfg.score_threshold)
    c = st.counters
    assert c.epoch == c.output_epochs + c.candidate_epochs
    assert len(st.history.units["epoch"]) == st.network.n_hidden
    assert len(st.history) == c.epoch + 1  # every epoch plus the final winning pass


def test_same_seed_bit_identical_different_seed_different(spirals, spirals_cfg):
    a = _train(spirals_cfg, *spirals).state
    b = _train(spirals_cfg, *spirals).state
    assert a.network.n_hidden == b.network.n_hidden
    assert torch.equal(a.network.output_weights, b.network.output_weights)
    for ua, ub in zip(a.network.units, b.network.units):
        assert torch.equal(ua.weights, ub.weights)
    c = _train(spirals_cfg.replace(seed=2), *spirals).state
    assert not torch.equal(a.network.units[0].weights, c.network.units[0].weights)


def test_training_does_not_touch_global_rngs(spirals, spirals_cfg):
    import random

    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    eng = trainer.start(spirals_cfg, *spirals)
    trainer.run(eng, stop_at_epoch=300)
    assert torch.equal(before[0], torch.get_rng_state())
    assert np.array_equal(before[1], np.random.get_state()[1])
    assert before[2] == random.getstate()


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_parity_with_gaussian_units(bits):
    ds = parity(bits)
    Y = encode_targets(ds.y, ds.classes, -0.5, 0.5)
    eng = _train(preset("parity").replace(seed=1), ds.X, Y)
    assert eng.state.status == "solved"
    assert eng.state.network.n_hidden <= {2: 1, 3: 1, 4: 2, 5: 3}[bits]


def test_cascade2_variant_solves_xor_and_installs_its_output_weights(xor_data):
    cfg = preset("fann-cascade2").replace(seed=3)
    eng = trainer.start(cfg, *xor_data)
    events = []
    trainer.run(eng, callbacks=[lambda e, ev: events.append(ev)])
    assert eng.state.status == "solved"
    assert "installed" in events and eng.state.network.n_hidden >= 1


def test_default_mixed_pool_records_unit_types(spirals):
    eng = _train(preset("default").replace(seed=4), *spirals)
    assert eng.state.status == "solved"
    acts = {u.activation for u in eng.state.network.units}
    assert acts <= {"symmetric_sigmoid", "gaussian", "sin_symmetric", "cos_symmetric"}
    assert eng.state.network.n_hidden <= 12


def test_regression_with_error_index_and_linear_outputs():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    y = (np.sin(2 * X[:, 0]) * X[:, 1]).astype(np.float32)
    y = (y - y.mean()) / y.std()
    cfg = preset("cascor1c").replace(output_activation="linear", error_measure="index", error_index_threshold=0.3,
                                     seed=1, max_units=25)
    eng = _train(cfg, X, y[:, None])
    rmse = float(torch.sqrt(((eng.outputs()[:, 0] - torch.tensor(y)) ** 2).mean()))
    assert eng.state.status == "solved"
    assert rmse <= 0.3 * float(np.std(y)) + 1e-6


def test_max_units_stops_unsolved(spirals, spirals_cfg):
    eng = _train(spirals_cfg.replace(max_units=2), *spirals)
    assert eng.state.status == "max_units" and eng.state.network.n_hidden == 2


def test_resume_in_process_is_bit_identical(spirals, spirals_cfg):
    from cascor.state import TrainState

    full = _train(spirals_cfg, *spirals).state
    eng = trainer.start(spirals_cfg, *spirals)
    trainer.run(eng, stop_at_epoch=777)
    copy = TrainState.from_state_dict(eng.state.state_dict())
    rest = trainer.resume(copy, *spirals)
    trainer.run(rest)
    assert torch.equal(rest.state.network.output_weights, full.network.output_weights)
    assert rest.state.history.to_dict() == full.history.to_dict() or _nan_equal(rest.state.history, full.history)


def _nan_equal(a, b):
    for key in a.epochs:
        np.testing.assert_array_equal(np.asarray(a.epochs[key]), np.asarray(b.epochs[key]))
    return True


@pytest.mark.parametrize(
    "X, Y, message",
    [
        (np.zeros((0, 2)), np.zeros((0, 1)), "empty"),
        (np.array([[1.0, np.nan]]), np.zeros((1, 1)), "NaN"),
        (np.array([[1.0, np.inf]]), np.zeros((1, 1)), "NaN or infinite"),
        (np.zeros((3, 2)), np.zeros((2, 1)), "3 patterns but targets have 2"),
        (np.zeros(3), np.zeros(3), "2-D"),
    ],
)
def test_bad_training_data_is_a_clear_error(X, Y, message, spirals_cfg):
    with pytest.raises(DataError, match=message):
        trainer.start(spirals_cfg, X, Y)


def test_resume_on_different_data_is_refused(spirals, spirals_cfg):
    eng = trainer.start(spirals_cfg, *spirals)
    trainer.run(eng, stop_at_epoch=10)
    X, Y = spirals
    with pytest.raises(DataError, match="differs from the data"):
        trainer.resume(eng.state, X + 1.0, Y)


def _first_candidate_phase(cfg, X, Y):
    """The run at the start of its first candidate phase (the residual the candidates see)."""
    eng = trainer.start(cfg, X, Y)
    while eng.state.phase.name != "candidates":
        eng.step()
    return eng


def _first_unit(cfg, X, Y):
    eng = _first_candidate_phase(cfg, X, Y)
    while eng.state.network.n_hidden == 0:
        eng.step()
    return eng.state.network.units[0].weights.clone()


def test_input_l2_is_a_decay_scaled_by_the_residuals_rms(spirals):
    """input_l2 adds input_l2 / RMS(residual) to the candidates' decay: the first unit equals the
    one trained with that decay given directly (input_decay), and its weights are smaller than
    with no penalty at all."""
    import math

    X, Y = spirals
    base = preset("default").replace(seed=3)
    E = _first_candidate_phase(base, X, Y).state.errors
    rms = math.sqrt(float(torch.dot(E.view(-1), E.view(-1))) / (E.shape[0] * E.shape[1]))
    lam = 0.05
    with_l2 = _first_unit(base.replace(input_l2=lam), X, Y)
    assert torch.equal(with_l2, _first_unit(base.replace(input_decay=lam / rms), X, Y))
    free = _first_unit(base, X, Y)
    assert float(with_l2.norm()) < 0.9 * float(free.norm())


def test_input_l2_run_resumes_bit_identically(spirals):
    from cascor.state import TrainState

    cfg = preset("default").replace(seed=2, input_l2=0.03, max_units=6)
    full = _train(cfg, *spirals).state
    eng = trainer.start(cfg, *spirals)
    while not (eng.state.network.n_hidden == 1 and eng.state.phase.name == "candidates"):
        eng.step()
    for _ in range(5):
        eng.step()
    assert eng.state.phase.name == "candidates"  # stopped inside its second candidate phase
    rest = trainer.resume(TrainState.from_state_dict(eng.state.state_dict()), *spirals)
    trainer.run(rest)
    assert torch.equal(rest.state.network.output_weights, full.network.output_weights)
    assert all(torch.equal(a.weights, b.weights) for a, b in zip(rest.state.network.units, full.network.units))


def test_input_l2_is_refused_with_cascade2_candidates():
    from cascor.errors import ConfigError

    with pytest.raises(ConfigError, match="input_l2"):
        preset("fann-cascade2").replace(input_l2=0.1)


def test_replacing_the_states_network_and_slots_mid_phase_is_seen_by_the_next_epoch(spirals, spirals_cfg):
    """The output phase's views are cached per phase: a network or quickprop slots swapped into the
    state (equal copies here) must be the ones trained from then on, not the objects viewed before."""
    from cascor.network import CascadeNetwork
    from cascor.quickprop import QuickpropSlots

    cfg = spirals_cfg.replace(max_units=3)
    plain = trainer.start(cfg, *spirals)
    trainer.run(plain)
    swapped = trainer.start(cfg, *spirals)
    swaps = 0
    while not swapped.state.done:
        event = swapped.step()
        st = swapped.state
        if event == "output" and st.phase.passes in (3, 7):  # inside output phases, after views were cached
            st.network = CascadeNetwork.from_state_dict(st.network.state_dict(), capacity=st.network.capacity)
            slots = QuickpropSlots(st.network.n_outputs, st.output_slots.delta.shape[1], st.output_slots.width)
            slots.load_state_dict(st.output_slots.state_dict())
            st.output_slots = slots
            swaps += 1
    assert swaps >= 2
    assert torch.equal(swapped.state.network.output_weights, plain.state.network.output_weights)
    assert swapped.state.counters.epoch == plain.state.counters.epoch
    for a, b in zip(swapped.state.network.units, plain.state.network.units):
        assert torch.equal(a.weights, b.weights)
