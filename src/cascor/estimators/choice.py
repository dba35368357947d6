"""Choices made on held-out rows (the estimators' ``input_l2='auto'`` and
``candidate_activations='auto'``): which values are tried, and the rule that picks one.

A mixin of :class:`cascor.sklearn._CascorBase`: it reads the estimator's parameters and runs
through the estimator's own ``_config`` and ``_losses``.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import preset as get_preset
from .common import is_auto

# input_l2='auto' on held-out data tries these (docs/results.md, "Candidate L2"): 0.1 suits
# well-fit, high-dimensional data (digits, friedman1), 0.03 noisy data (make_classification), 0
# what neither helps; no single value was right on every benchmark set.
INPUT_L2_GRID = (0.0, 0.03, 0.1)
# The choice is made when at least INPUT_L2_AUTO_MIN_HELD_OUT rows are held out: on fewer the
# best of three noisy held-out scores picks a value by chance (breast_cancer, 91 held-out rows:
# accuracy .974 -> .967-.972; diabetes, 71 rows: R^2 .478 -> .466), from 288 rows on it gained
# (digits .967 -> .975, make_classification .849 -> .857, friedman1 R^2 .987 -> .997); and up to
# INPUT_L2_AUTO_MAX_SAMPLES samples: each value costs a run, and on make_classification(100 000)
# the choice was 0 at 2.3x the fit time (44 s -> 102 s). Outside these bounds 'auto' is 0.
INPUT_L2_AUTO_MIN_HELD_OUT = 200
INPUT_L2_AUTO_MAX_SAMPLES = 20_000
# candidate_activations='auto' (the estimators' default on the `default` preset), from the same
# number of held-out rows on: the preset's mixed pool or Gaussian units only, chosen on the
# held-out rows (docs/results.md, "Session 17"). No pool was best everywhere: Gaussian units gained
# on make_classification's clustered classes (accuracy .856 -> .879, log-loss .386 -> .336) and
# lost on two-spirals, circles (log-loss .026 -> .045) and friedman1 (R^2 .996 -> .992). Above
# INPUT_L2_AUTO_MAX_SAMPLES too since session 18 (two runs at input_l2 0, with the estimators'
# candidate_rows; "Session 18"): on three 100k-row sets it switched to Gaussian units on the scale
# set (.9838 -> .9858) and the 4-class set (.9032 -> .9314), and on friedman1 (R^2 .9568 -> .9559),
# in about the time one run on every row took.
ALTERNATIVE_POOL = ("gaussian",)
# ... and only on clear evidence: the alternative's mean held-out loss must be lower by this many
# standard errors of the paired per-row difference (a one-sided test at about 2.3 %). Picking the
# lower loss outright switched on noise where the pools are close (digits, choosing folds: log-loss
# .096 -> .099, accuracy .974 -> .976).
POOL_SWITCH_Z = 2.0


def clearly_lower(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None, z: float) -> bool:
    """Whether per-row losses ``a`` have a lower (weighted) mean than ``b`` on the same rows by
    more than ``z`` standard errors of the paired difference (NaN anywhere: False)."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (np.all(np.isfinite(d)) and w.sum() > 0):
        return False
    mean = float(np.average(d, weights=w))
    n_eff = w.sum() ** 2 / (w * w).sum()  # Kish's effective sample size (n without weights)
    se = math.sqrt(float(np.average((d - mean) ** 2, weights=w)) / n_eff)
    return mean > z * se if se > 0 else mean > 0


class HeldOutChoices:
    """``_choice_grids`` (what a fit tries), ``_choose`` (what it keeps), ``_row_losses``."""

    def _choice_grids(self, n_samples: int, validation_fraction: float) -> tuple[tuple, tuple]:
        """(input_l2 values, candidate pools) a fresh fit tries on its held-out rows: with at least
        :data:`INPUT_L2_AUTO_MIN_HELD_OUT` held-out rows, (the preset's pool,
        :data:`ALTERNATIVE_POOL`) for ``candidate_activations='auto'`` and, up to
        :data:`INPUT_L2_AUTO_MAX_SAMPLES` samples, :data:`INPUT_L2_GRID` for ``input_l2='auto'``
        (above, input_l2 is 0 and the pools are compared at 0: two runs); otherwise none (each
        'auto' then takes the preset's value, 0 for input_l2)."""
        held_out = math.ceil(n_samples * validation_fraction)  # as validation.split_indices counts
        if validation_fraction <= 0 or held_out < INPUT_L2_AUTO_MIN_HELD_OUT:
            return (), ()
        small = n_samples <= INPUT_L2_AUTO_MAX_SAMPLES
        l2 = INPUT_L2_GRID if is_auto(self._param("input_l2")) and small else ()
        pools = ()
        if is_auto(self._param("candidate_activations")):
            own = get_preset(self.preset).candidate_activations
            pools = (own, ALTERNATIVE_POOL) if own != ALTERNATIVE_POOL else ()
        return l2, pools

    def _param(self, name: str):
        """A config parameter as the fit sees it: the estimator's, else ``overrides``', else the
        estimators' default on the ``default`` preset ('auto' for the chosen ones), else None
        (the preset's value)."""
        value = getattr(self, name)
        if value is not None:
            return value
        return (self.overrides or {}).get(name, self._estimator_defaults().get(name))

    def _choose(self, l2_grid, pools, fit_one, held):
        """(chosen changes, the chosen run's engine): ``fit_one(input_l2, pool)`` runs the fit's
        run (same seed, same held-out rows) with those settings (None: the parameter's own).
        For each pool (the preset's and :data:`ALTERNATIVE_POOL`, or just the parameter's),
        input_l2 by each run's best held-out score, ties to the smaller value; then the pool by
        :meth:`_row_losses` of each pool's chosen network on the held-out rows ``held(state)`` =
        (X, Y, sample weights or None): the preset's pool unless the other's mean loss is lower by
        more than :data:`POOL_SWITCH_Z` standard errors of the paired per-row difference.
        Each pool gets its own input_l2 because the two interact: Gaussian units did best without
        it (make_classification, two splits: out-of-bag .866 / .860 at 0, .852 / .844 at 0.03),
        the mixed pool with it (friedman1: choosing the pool at 0 picked Gaussian units, R^2 .996
        -> .992). ``input_l2_scores_``: the chosen pool's grid; ``pool_losses_``: each pool's mean
        held-out loss (log-loss, or the squared error of the standardised targets)."""
        chosen = {}
        for pool in pools or (None,):
            if not l2_grid:
                chosen[pool] = (None, fit_one(None, pool), None)
                continue
            scores, engines = {}, {}
            for value in l2_grid:
                eng = engines[value] = fit_one(value, pool)
                v = eng.state.validation
                scores[value] = v.best_score if v is not None and v.best_n_units >= 0 else float("nan")
            known = [value for value in l2_grid if not np.isnan(scores[value])]
            lam = max(known, key=lambda value: (scores[value], -value)) if known else l2_grid[0]
            chosen[pool] = (lam, engines[lam], scores)
        self.pool_losses_, pool = None, (pools or (None,))[0]
        if pools:
            Xh, Yh, w = held(chosen[pools[0]][1].state)  # (the same rows for every run)
            losses = {p: self._row_losses(eng.state, Xh, Yh) for p, (_, eng, _) in chosen.items()}
            self.pool_losses_ = {",".join(p): float(np.average(loss, weights=w)) for p, loss in losses.items()}
            if clearly_lower(losses[pools[1]], losses[pools[0]], w, POOL_SWITCH_Z):
                pool = pools[1]
        lam, engine, self.input_l2_scores_ = chosen[pool]
        changes = {} if pool is None else {"candidate_activations": pool}
        if lam is not None:
            changes["input_l2"] = lam
        return changes, engine

    def _row_losses(self, state, X, Y) -> np.ndarray:
        """A run's chosen network's loss on each held-out row: the classifier's log-loss of its
        probabilities (continuous: two pools' held-out accuracies differ by a row or two, or tie,
        where their log-losses differ clearly), the regressor's squared error (summed over
        outputs, on the standardised targets)."""
        import torch

        net = state.best_network()
        with torch.no_grad():
            out = net(torch.as_tensor(np.asarray(X, dtype=np.float32)), dtype=torch.float64).numpy()
        return self._losses(out, np.asarray(Y, dtype=np.float64), state.config)
