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
