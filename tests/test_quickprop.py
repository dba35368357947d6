import numpy as np
import torch

from cascor.quickprop import QuickpropSlots, quickprop_reference, quickprop_update


def _cases(rng, n):
    w = rng.normal(size=n).astype(np.float32)
    d = rng.normal(size=n).astype(np.float32)
    p = rng.normal(size=n).astype(np.float32)
    s = rng.normal(size=n).astype(np.float32)
    # Exercise every branch: zero steps, zero slopes, s exactly at shrink * p, s == p.
    d[::7] = 0.0
    s[::11] = 0.0
    s[3::13] = p[3::13] * np.float32(2.0 / 3.0)
    s[5::17] = p[5::17]
    return w, d, p, s


def test_vectorised_update_matches_cascor1c_reference():
    rng = np.random.default_rng(0)
    w, d, p, s = _cases(rng, 4000)
    eps, mu, decay = 0.35, 2.0, 1e-4
    W, D, Pv = (torch.tensor(a) for a in (w, d, p))
    quickprop_update(W, D, Pv, torch.tensor(s), epsilon=eps, mu=mu, decay=decay)
    for i in range(len(w)):
        # float32 scalars (NEP 50 keeps Python floats weak), as the C code computes in float.
        rw, rd, rp = quickprop_reference(w[i], d[i], p[i], s[i], eps, mu, decay)
        if not np.isfinite(rd):
            assert not np.isfinite(float(D[i])) or abs(float(p[i]) - float(s[i])) < 1e-6
            continue
        assert np.isclose(float(D[i]), rd, rtol=1e-5, atol=1e-6), (i, w[i], d[i], p[i], s[i])
        assert np.isclose(float(W[i]), rw, rtol=1e-5, atol=1e-6)
        assert np.isclose(float(Pv[i]), rp, rtol=1e-6, atol=1e-7)


def test_zero_previous_step_is_plain_gradient_descent():
    W = torch.tensor([1.0, -1.0])
    D = torch.zeros(2)
    P = torch.zeros(2)
    quickprop_update(W, D, P, torch.tensor([0.5, -0.25]), epsilon=0.1, mu=2.0, decay=0.0)
    assert torch.allclose(D, torch.tensor([-0.05, 0.025]))
    assert torch.allclose(W, torch.tensor([0.95, -0.975]))
    assert torch.equal(P, torch.tensor([0.5, -0.25]))


def test_slots_grow_with_zeroed_columns_and_round_trip():
    slots = QuickpropSlots(2, 5, 3)
    slots.delta.fill_(7.0)
    slots.grow()
    d, p = slots.views()
    assert d.shape == (2, 4) and torch.all(d[:, 3] == 0) and torch.all(p[:, 3] == 0)
    other = QuickpropSlots(2, 5, 4)
    other.load_state_dict(slots.state_dict())
    assert torch.equal(other.views()[0], d)


def _torch_rule(weights, delta, prev_slope, slope, epsilon, mu, decay):
    """The rule as torch operations (how cascor computed it until the NumPy views): the
    independent statement that the faster path must reproduce to the bit."""
    s = slope
    if decay:
        s.add_(weights, alpha=decay)
    sgn = torch.sign(delta)
    step = torch.where(sgn * s <= 0, s * -epsilon, 0.0)
    step.add_(torch.where(sgn * (s - prev_slope * (mu / (1.0 + mu))) <= 0, delta * mu,
                          delta * s / (prev_slope - s)))
    weights.add_(step)
    delta.copy_(step)
    prev_slope.copy_(s)


def test_update_equals_the_torch_formulation_bit_for_bit_signed_zeros_and_non_finite_included():
    rng = np.random.default_rng(1)
    w, d, p, s = _cases(rng, 5000)
    # The corners where two formulations could part: signed zeros, infinities, NaN, overflow.
    d[1::19], s[2::23], p[4::29] = -0.0, -0.0, -0.0
    d[6::31], s[8::37], p[9::41] = np.inf, -np.inf, np.nan
    p[12::47], p[13::53] = -np.inf, np.inf  # a quadratic step of -0.0 (d, s > 0, p = -inf)
    s[10::43], d[10::43] = np.float32(3e38), np.float32(3e38)
    # Strided views with spare columns, as the output layer's weights and slots are.
    cap = np.zeros((5000, 3), dtype=np.float32)
    for decay in (0.0, 1e-3):
        mine = [torch.from_numpy(cap.copy()) for _ in range(3)]
        theirs = [torch.from_numpy(cap.copy()) for _ in range(3)]
        for group in (mine, theirs):
            for buf, a in zip(group, (w, d, p)):
                buf[:, 1] = torch.from_numpy(a)
        views = [b[:, 1:2] for b in mine]
        quickprop_update(*views, torch.from_numpy(s.copy())[:, None], epsilon=0.35, mu=1.75, decay=decay)
        _torch_rule(*(b[:, 1:2] for b in theirs), torch.from_numpy(s.copy())[:, None], 0.35, 1.75, decay)
        for a, b in zip(mine, theirs):
            assert a.numpy().tobytes() == b.numpy().tobytes()  # bit patterns: -0.0 and NaN payloads too
