"""Oracle tests: the vectorised pool against a naive per-candidate float64 reference."""

import numpy as np
import torch

from cascor.candidates import CandidatePool, candidate_seed


def _problem(seed=0, P=57, F=6, O=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, F)).astype(np.float32)
    X[:, 0] = 1.0
    E = rng.normal(size=(P, O)).astype(np.float32) * 0.3
    return X, E


def _naive_cascor1c_epoch(W, prev_cor, X, E, activation, eps, mu, decay, D, Ps):
    """cascor1.c COMPUTE_SLOPES + UPDATE_INPUT_WEIGHTS + ADJUST_CORRELATIONS, one candidate at a time, float64."""
    from cascor.quickprop import quickprop_reference

    X, E = X.astype(np.float64), E.astype(np.float64)
    P, O = E.shape
    sum_err = E.mean(axis=0)
    sse = float((E**2).sum())
    new_w, new_d, new_p, cors = [], [], [], []
    for c in range(W.shape[0]):
        w = W[c].astype(np.float64)
        slope = np.zeros_like(w)
        cor = np.zeros(O)
        vsum = 0.0
        for p in range(P):
            s = float(X[p] @ w)
            v, a = activation(s)
            vsum += v
            change = 0.0
            for o in range(O):
                direction = -1.0 if prev_cor[c, o] < 0 else 1.0
                change -= direction * a * (E[p, o] - sum_err[o]) / sse
                cor[o] += v * E[p, o]
            slope += change * X[p]
        cor = (cor - vsum * sum_err) / sse  # true covariance (paper), normalised by SSE
        ws, ds, ps = [], [], []
        for i in range(len(w)):
            a, b, c2 = quickprop_reference(w[i], float(D[c, i]), float(Ps[c, i]), slope[i], eps, mu, decay)
            ws.append(a), ds.append(b), ps.append(c2)
        new_w.append(ws), new_d.append(ds), new_p.append(ps), cors.append(cor)
    return np.array(new_w), np.array(new_d), np.array(new_p), np.array(cors)


def _sym_sigmoid(s):
    v = 1.0 / (1.0 + np.exp(-s)) - 0.5
    return v, 0.25 - v * v


def test_covariance_epoch_matches_naive_reference():
    X, E = _problem()
    C, F, O = 5, X.shape[1], E.shape[1]
    pool = CandidatePool([("symmetric_sigmoid", 1.0)] * C, F, O, X.shape[0], cascade2=False)
    pool.initialize(123, 0, 1.0)
    Xt, Et = torch.tensor(X), torch.tensor(E)
    Ec = (Et - Et.mean(0)) / float((Et**2).sum())
    pool.measure(Xt, Ec)
    # Make the slots non-trivial: run a couple of epochs, then compare one against the oracle.
    for _ in range(3):
        pool.train_covariance(Xt, Ec, Ec.t().contiguous(), 0.02, 2.0, 1e-3)
    W0 = pool.weights.numpy().copy()
    D0, P0 = (t.numpy().copy() for t in pool.slots.views())
    prev = pool.prev_cor.numpy().copy()
    ref_w, ref_d, ref_p, ref_cor = _naive_cascor1c_epoch(W0, prev, X, E, _sym_sigmoid, 0.02, 2.0, 1e-3, D0, P0)
    pool.train_covariance(Xt, Ec, Ec.t().contiguous(), 0.02, 2.0, 1e-3)
    np.testing.assert_allclose(pool.weights.numpy(), ref_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pool.slots.views()[0].numpy(), ref_d, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(pool.prev_cor.numpy(), ref_cor, rtol=1e-4, atol=1e-6)
    scores = np.abs(ref_cor).sum(axis=1)
    np.testing.assert_allclose(pool.scores.numpy(), scores, rtol=1e-4)
    assert pool.best == int(np.argmax(scores))


def test_mixed_pool_with_steepness_matches_per_candidate_values():
    X, E = _problem(1)
    plan = [("gaussian", 0.5), ("gaussian", 1.0), ("tanh", 0.25), ("sin_symmetric", 1.0), ("elliot", 0.75)]
    pool = CandidatePool(plan, X.shape[1], E.shape[1], X.shape[0], cascade2=False)
    pool.initialize(7, 2, 1.0)
    block = pool.blocks[0]
    block._activate(torch.tensor(X), with_prime=True)
    fns = {
        "gaussian": lambda s: (np.exp(-0.5 * s * s), -s * np.exp(-0.5 * s * s)),
        "tanh": lambda s: (np.tanh(s), 1 - np.tanh(s) ** 2),
        "sin_symmetric": lambda s: (np.sin(s), np.cos(s)),
        "elliot": lambda s: (0.5 * s / (1 + abs(s)) + 0.5, 0.5 / (1 + abs(s)) ** 2),
    }
    W = pool.weights.numpy().astype(np.float64)
    for c, (name, k) in enumerate(plan):
        net = k * (X.astype(np.float64) @ W[c])
        v, a = fns[name](net)
        np.testing.assert_allclose(block._V[c].numpy(), v, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(block._A[c].numpy(), k * a, rtol=1e-4, atol=1e-6)


def test_cascade2_gradients_match_autograd_float64():
    X, E = _problem(2)
    R = -E
    C = 4
    pool = CandidatePool([("tanh", 1.0)] * C, X.shape[1], R.shape[1], X.shape[0], cascade2=True)
    pool.initialize(5, 1, 1.0)
    W = torch.tensor(pool.weights.numpy(), dtype=torch.float64, requires_grad=True)
    Wo = torch.tensor(pool.out_weights.numpy(), dtype=torch.float64, requires_grad=True)
    X64, R64 = torch.tensor(X, dtype=torch.float64), torch.tensor(R, dtype=torch.float64)
    V = torch.tanh(W @ X64.t())  # [C, P]
    loss = ((V.unsqueeze(2) * Wo.unsqueeze(1) - R64.unsqueeze(0)) ** 2).sum()
    loss.backward()
    # One plain-gradient epoch (zero slots => step = -eps * slope) reveals the slopes used.
    Rt = torch.tensor(R)
    w0, o0 = pool.weights.clone(), pool.out_weights.clone()
    rr = float((Rt**2).sum())
    pool.train_cascade2(torch.tensor(X), Rt, Rt.t().contiguous(), rr, 1.0, 1.0, 2.0, 0.0)
    np.testing.assert_allclose((w0 - pool.weights).numpy(), W.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose((o0 - pool.out_weights).numpy(), Wo.grad.numpy(), rtol=1e-3, atol=1e-4)
    per_cand = ((V.unsqueeze(2) * Wo.unsqueeze(1) - R64.unsqueeze(0)) ** 2).sum(dim=(1, 2)).detach().numpy()
    np.testing.assert_allclose(pool.scores.numpy(), (rr - per_cand) / rr, rtol=1e-3, atol=1e-5)


def test_candidate_initialisation_is_independent_of_pool_order():
    a = CandidatePool([("symmetric_sigmoid", 1.0)] * 6, 4, 1, 10, cascade2=False)
    a.initialize(99, 3, 1.0)
    g = torch.Generator()
    g.manual_seed(candidate_seed(99, 3, 4))
    expected = torch.rand(4, generator=g) * 2.0 - 1.0
    assert torch.equal(a.weights[4], expected)
    assert candidate_seed(99, 3, 4) != candidate_seed(99, 4, 3)


def test_blocked_pool_equals_one_block_and_blocks_are_views():
    """Splitting the pool into blocks (the unit every backend computes) changes no bit here."""
    X, E = _problem(3, P=300)
    Xt, Et = torch.tensor(X), torch.tensor(E)
    Ec = (Et - Et.mean(0)) / float((Et**2).sum())
    plan = [("symmetric_sigmoid", 1.0)] * 24 + [("gaussian", 0.5)] * 8
    pools = []
    for block_size in (32, 8):
        pool = CandidatePool(plan, X.shape[1], E.shape[1], X.shape[0], cascade2=False, block_size=block_size)
        pool.initialize(11, 4, 1.0)
        pool.measure(Xt, Ec)
        for _ in range(5):
            pool.train_covariance(Xt, Ec, Ec.t().contiguous(), 0.05, 2.0, 0.0)
        pools.append(pool)
    assert len(pools[1].blocks) == 4
    assert torch.equal(pools[0].weights, pools[1].weights) and torch.equal(pools[0].prev_cor, pools[1].prev_cor)
    assert pools[0].best == pools[1].best


def test_seeds_derived_together_are_numpys_seed_sequence_hash():
    from cascor.seeds import derived_seed, derived_seeds

    rng = np.random.default_rng(5)
    for trial in range(60):
        root = int(rng.integers(0, 2**63)) if trial % 3 else int(rng.integers(0, 3))
        prefix = [int(x) for x in rng.integers(0, 2**40 if trial % 4 == 0 else 50, int(rng.integers(0, 4)))]
        n = int(rng.integers(1, 40))
        assert derived_seeds(root, *prefix, count=n) == [derived_seed(root, *prefix, i) for i in range(n)]
        # and derived_seed is SeedSequence's first 64-bit word, shifted to 63 bits
        seq = np.random.SeedSequence([root, *prefix, n - 1])
        assert derived_seed(root, *prefix, n - 1) == int(seq.generate_state(1, dtype=np.uint64)[0]) >> 1
    assert derived_seeds(1, 2, count=0) == []


def test_select_takes_the_first_maximum_and_a_nan_as_torch_argmax_does():
    pool = CandidatePool([("symmetric_sigmoid", 1.0)] * 4, 3, 1, 5, cascade2=False)
    for values in ([1.0, 3.0, 3.0, 2.0], [1.0, float("nan"), 3.0, float("nan")], [-0.0, 0.0, 0.0, -1.0]):
        pool.scores.copy_(torch.tensor(values))
        pool.select()
        assert pool.best == int(torch.argmax(pool.scores))
        assert pool.best_score == float(pool.scores[pool.best]) or np.isnan(pool.best_score)
