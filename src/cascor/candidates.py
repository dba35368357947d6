"""The candidate pool, trained as one tensor.

All C candidates share the same inputs (the cached values rows, fan-in F), so the pool is
one weight matrix ``W [C, F]`` and an epoch is a handful of matrix products with analytic
gradients. Work buffers are ``[C, P]`` (candidates x patterns) so that each activation type
of a mixed pool is a contiguous block of rows.

Two scores:

* ``covariance`` (Fahlman & Lebiere): maximise ``S = sum_o |sum_p (V_p - mean V)(E_po - mean E_o)|``,
  normalised by the residual's sum of squares as in ``cascor1.c``. The sign of each
  per-output correlation steering the gradient is the previous epoch's, and the first
  epoch of a phase only measures (see ``cascor1.c``'s comment above COMPUTE_CORRELATIONS).
* ``cascade2`` (FANN's Cascade 2): each candidate also carries output weights ``w_o`` and
  minimises ``sum_p sum_o (V_p w_o - R_po)^2`` against the output-space residual
  ``R = target - output``; its score is the fraction of ``sum R^2`` it explains.

Every candidate's initial weights come from its own generator, seeded from
(root seed, unit index, candidate index), so a pool split across workers or reordered
draws exactly the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import get_activation
from .quickprop import QuickpropSlots, quickprop_update
from .seeds import derived_seed, derived_seeds
from .tree import load_tensors

Tensor = torch.Tensor
_ZERO, _ONE, _MINUS_ONE = torch.tensor(0.0), torch.tensor(1.0), torch.tensor(-1.0)  # 0-dim: cheaper than Python numbers


def candidate_seed(root_seed: int, unit_index: int, candidate_index: int) -> int:
    return derived_seed(root_seed, 1, unit_index, candidate_index)


ROWS_STREAM = 6  # derived_seed(seed, ROWS_STREAM, unit): the rows a candidate phase trains on


def candidate_rows(root_seed: int, unit_index: int, n_patterns: int, m: int) -> np.ndarray | None:
    """The training rows candidate phase ``unit_index`` trains on (``config.candidate_rows``):
    None for every row (m = 0, or m >= n_patterns), else m distinct rows in increasing order (memory
    order: the gather stays sequential). Drawn with NumPy's legacy RandomState, whose stream NumPy
    keeps fixed across versions (as the validation split), from stream (6, unit) of the seed, so
    each unit sees fresh rows and a resumed phase the same ones."""
    if not m or m >= n_patterns:
        return None
    rng = np.random.RandomState(derived_seed(root_seed, ROWS_STREAM, unit_index) % 2**32)
    return np.sort(rng.permutation(n_patterns)[:m])


def _groups(plan: list[tuple[str, float]]) -> list[tuple[object, int, int]]:
    """Contiguous runs of one activation type: one kernel call per run, not per candidate."""
    groups, start = [], 0
    for i in range(1, len(plan) + 1):
        if i == len(plan) or plan[i][0] != plan[start][0]:
            groups.append((get_activation(plan[start][0]), start, i))
            start = i
    return groups


class Scratch:
    """Per-epoch work buffers [C, P] that blocks computed one after another can share.

    Every epoch rewrites them before reading them, so sharing changes no result; it keeps the
    working set of a pool at one block's buffers (4 x 2.5 MB for 32 candidates x 20,000
    patterns) instead of one set per block, which thrashed the caches. Every block's views
    start at the buffers' first row, so kernels see the same alignment as with own buffers.
    """

    def __init__(self, rows: int, n_patterns: int):
        self._buffers = [torch.empty(rows, n_patterns) for _ in range(4)]

    def views(self, rows: int) -> list[Tensor]:
        return [b[:rows] for b in self._buffers]


class PoolBlock:
    """A fixed block of candidates trained as one tensor; the unit of work of every backend.

    Its tensors are row slices (views) of the pool's, so in-place updates reach the pool.
    Every backend computes the same blocks with the same shapes, so results are identical
    whichever process or machine runs a block.
    """

    def __init__(self, plan, weights, delta, prev_slope, prev_cor, scores, out_weights=None, out_delta=None,
                 out_prev_slope=None, n_patterns: int = 0, scratch: Scratch | None = None):
        self.plan = plan
        self.groups = _groups(plan)
        steep = torch.tensor([s for _, s in plan], dtype=torch.float32).unsqueeze(1)
        self.steepness = None if bool((steep == 1.0).all()) else steep
        self.weights, self.delta, self.prev_slope = weights, delta, prev_slope
        self.prev_cor, self.scores = prev_cor, scores
        self.out_weights, self.out_delta, self.out_prev_slope = out_weights, out_delta, out_prev_slope
        C, P = len(plan), n_patterns
        self._S, self._V, self._A, self._G = (scratch or Scratch(C, P)).views(C)
        # Each activation group's rows of the work buffers, sliced once: slicing a tensor costs
        # a few microseconds, and an epoch would otherwise slice five times per group.
        self._group_views = [(act, self._S[a:b], self._V[a:b], self._A[a:b]) for act, a, b in self.groups]
        self._X = self._Xt = None  # the last inputs seen and their transpose (a phase reuses one X)

    def _activate(self, X: Tensor, with_prime: bool) -> None:
        """V = f(W X^T) (and A = f'), for every candidate of the block at once; X is [P, F]."""
        S, A = self._S, self._A
        if X is not self._X:
            self._X, self._Xt = X, X.t()
        torch.mm(self.weights, self._Xt, out=S)
        if self.steepness is not None:
            S.mul_(self.steepness)
        for act, s, v, a in self._group_views:
            act.forward(s, v)
            if with_prime:
                act.prime(v, s, a)
        if with_prime and self.steepness is not None:
            A.mul_(self.steepness)

    def measure(self, X: Tensor, Ec: Tensor) -> None:
        """Covariance only: the phase's first epoch computes correlations, trains nothing."""
        self._activate(X, with_prime=False)
        self.prev_cor.copy_(self._V @ Ec)
        torch.sum(self.prev_cor.abs(), dim=1, out=self.scores)

    def train_covariance(self, X: Tensor, Ec: Tensor, EcT: Tensor, epsilon: float, mu: float, decay: float) -> None:
        """One ascent epoch. Ec is the centred, SSE-normalised residual [P, O]; EcT its transpose."""
        self._activate(X, with_prime=True)
        cor = self._V @ Ec  # [C, O], correlations of the pre-update weights
        # Descent direction on -S: -sign(cor_prev) per output (cascor1.c: negative -> -1 else +1).
        neg_dir = torch.where(self.prev_cor < _ZERO, _ONE, _MINUS_ONE)
        torch.mm(neg_dir, EcT, out=self._G)  # [C, P]
        self._G.mul_(self._A)
        slope = self._G @ X  # [C, F]
        quickprop_update(self.weights, self.delta, self.prev_slope, slope, epsilon=epsilon, mu=mu, decay=decay)
        self.prev_cor.copy_(cor)
        torch.sum(cor.abs_(), dim=1, out=self.scores)

    def train_cascade2(self, X: Tensor, R: Tensor, RT: Tensor, rr: float, epsilon_in: float, epsilon_out: float,
                       mu: float, decay: float) -> None:
        """One descent epoch on sum_p sum_o (V w_o - R)^2 for every candidate."""
        self._activate(X, with_prime=True)
        V, Wo = self._V, self.out_weights
        s2 = torch.sum(V * V, dim=1, keepdim=True)  # [C, 1]
        vr = V @ R  # [C, O]
        wo2 = Wo * Wo
        loss = torch.sum(wo2 * s2 - 2.0 * Wo * vr, dim=1) + rr
        torch.div(rr - loss, rr, out=self.scores)
        g_out = (Wo * s2 - vr).mul_(2.0)
        # dL/dV = 2 (V |w|^2 - w . R_p), then through the activation and into the inputs.
        torch.mm(Wo, RT, out=self._G)
        self._G.mul_(-1.0).add_(V * wo2.sum(dim=1, keepdim=True)).mul_(2.0).mul_(self._A)
        slope_in = self._G @ X
        quickprop_update(self.weights, self.delta, self.prev_slope, slope_in, epsilon=epsilon_in, mu=mu, decay=decay)
        quickprop_update(Wo, self.out_delta, self.out_prev_slope, g_out, epsilon=epsilon_out, mu=mu, decay=decay)


class CandidatePool:
    """C candidate units with fan-in F and their quickprop state for one candidate phase.

    The pool is stored as whole ``[C, ...]`` tensors (that is what a snapshot holds) and
    computed in blocks of ``block_size`` rows (see :class:`PoolBlock`).
    """

    def __init__(
        self,
        plan: list[tuple[str, float]],
        fan_in: int,
        n_outputs: int,
        n_patterns: int,
        cascade2: bool,
        block_size: int = 32,
    ):
        self.plan = [(str(a), float(s)) for a, s in plan]
        self.cascade2 = cascade2
        C, F, O = len(plan), fan_in, n_outputs
        self.fan_in = F
        self.n_patterns = n_patterns
        self.block_size = block_size
        self.weights = torch.zeros(C, F)
        self.slots = QuickpropSlots(C, F, F)
        # covariance: last epoch's normalised correlations (their signs steer the gradient);
        # cascade2: the candidates' own output weights.
        self.prev_cor = torch.zeros(C, O)
        self.out_weights = torch.zeros(C, O) if cascade2 else None
        self.out_slots = QuickpropSlots(C, O, O) if cascade2 else None
        self.scores = torch.zeros(C)
        self._scores_np = self.scores.numpy()
        self.best = 0
        self.best_score = 0.0
        self.ranges = [(a, min(a + block_size, C)) for a in range(0, C, block_size)]
        self._scratch = Scratch(min(block_size, C), n_patterns)
        self.blocks = [self._block(a, b) for a, b in self.ranges]

    def _block(self, a: int, b: int) -> PoolBlock:
        d, p = self.slots.views()
        extra = {}
        if self.cascade2:
            od, op = self.out_slots.views()
            extra = dict(out_weights=self.out_weights[a:b], out_delta=od[a:b], out_prev_slope=op[a:b])
        return PoolBlock(self.plan[a:b], self.weights[a:b], d[a:b], p[a:b], self.prev_cor[a:b], self.scores[a:b],
                         n_patterns=self.n_patterns, scratch=self._scratch, **extra)

    @property
    def size(self) -> int:
        return len(self.plan)

    def initialize(self, root_seed: int, unit_index: int, weight_range: float) -> None:
        """Random initial weights in [-range, range), one derived generator per candidate
        (stream (1, unit, candidate)); the affine map is applied once to the whole pool."""
        gen = torch.Generator()
        seeds = derived_seeds(root_seed, 1, unit_index, count=self.size)
        for c, seed in enumerate(seeds):
            gen.manual_seed(seed)
            torch.rand(self.fan_in, generator=gen, out=self.weights[c])
            if self.out_weights is not None:
                torch.rand(self.out_weights.shape[1], generator=gen, out=self.out_weights[c])
        for w in (self.weights, self.out_weights):
            if w is not None:
                w.mul_(2 * weight_range).sub_(weight_range)

    def select(self) -> None:
        scores = self._scores_np  # (NumPy: a tenth of torch's time for two tiny calls)
        self.best = int(scores.argmax())  # first maximum on ties (a NaN counts as one), as torch and cascor1.c
        self.best_score = float(scores[self.best])

    def measure(self, X: Tensor, Ec: Tensor) -> None:
        for block in self.blocks:
            block.measure(X, Ec)
        self.select()

    def train_covariance(self, X: Tensor, Ec: Tensor, EcT: Tensor, epsilon: float, mu: float, decay: float) -> None:
        for block in self.blocks:
            block.train_covariance(X, Ec, EcT, epsilon, mu, decay)
        self.select()

    def train_cascade2(self, X, R, RT, rr, epsilon_in, epsilon_out, mu, decay) -> None:
        for block in self.blocks:
            block.train_cascade2(X, R, RT, rr, epsilon_in, epsilon_out, mu, decay)
        self.select()

    # -- install -------------------------------------------------------------------------
    def winner(self) -> tuple[int, Tensor, str, float, Tensor]:
        """(index, weights, activation, steepness, correlations or Cascade 2 output weights)."""
        c = self.best
        act, steep = self.plan[c]
        extra = (self.out_weights if self.cascade2 else self.prev_cor)[c].clone()
        return c, self.weights[c].clone(), act, steep, extra

    # -- state ---------------------------------------------------------------------------
    def state_dict(self, copy: bool = True) -> dict:
        """Tensors are clones, or with ``copy=False`` the live tensors (read them before the next epoch)."""
        c = torch.clone if copy else torch.Tensor.detach
        d, p = self.slots.views()
        state = {
            "activations": [a for a, _ in self.plan],
            "steepnesses": torch.tensor([s for _, s in self.plan], dtype=torch.float64),
            "weights": c(self.weights),
            "delta": c(d),
            "prev_slope": c(p),
            "prev_cor": c(self.prev_cor),
            "scores": c(self.scores),
            "best": self.best,
            "best_score": self.best_score,
        }
        if self.cascade2:
            od, op = self.out_slots.views()
            state.update(out_weights=c(self.out_weights), out_delta=c(od), out_prev_slope=c(op))
        return state

    def load_state_dict(self, state: dict) -> None:
        d, p = self.slots.views()
        dst = {"weights": self.weights, "delta": d, "prev_slope": p, "prev_cor": self.prev_cor, "scores": self.scores}
        if self.cascade2:
            od, op = self.out_slots.views()
            dst.update(out_weights=self.out_weights, out_delta=od, out_prev_slope=op)
        load_tensors(dst, state, "candidate pool state")
        self.best = int(state["best"])
        self.best_score = float(state["best_score"])
