"""Averaged fits (``n_estimators``): cascades fitted on bootstrap resamples of the rows, each
validated on its out-of-bag rows, averaged into one network; and the pool choice such a fit makes
on the average's out-of-bag loss.

A mixin of :class:`cascor.sklearn._CascorBase` (it runs through the estimator's ``_config``,
``_choose`` and ``_losses``).
"""

from __future__ import annotations

import numpy as np

from .choice import POOL_SWITCH_Z, clearly_lower
from .common import Progress, is_auto

# Data too small to hold a share out (early_stopping='auto' holds none) has each cascade grow until
# its training rows are solved: confident everywhere, and wrong with confidence between them
# (two-spirals log-loss 1.31). n_estimators='auto' then averages this many cascades, each fitted on
# a bootstrap resample of the rows, before the output activation (docs/results.md, "Session 13";
# 20 rather than session 13's 10 since session 15: two-spirals .843 / .363 -> .888 / .268 and iris
# log-loss .081 -> .079 / .107 -> .097 on the choosing folds, at twice the fit time).
AUTO_ENSEMBLE = 20
# Where the classifier holds data out, n_estimators='auto' averages this many cascades, each on a
# bootstrap resample and validated on its out-of-bag rows (docs/results.md, "Session 15"): log-loss
# circles .039 -> .030 (MLP .031), digits .095 -> .092 (MLP .093) at about 4x the fit time;
# regression gained nothing beyond noise (diabetes R^2 -.009 to +.005), so the regressor keeps one
# cascade. Up to AUTO_ENSEMBLE_MAX_SAMPLES samples (as the input_l2 choice): beyond, one cascade
# already takes tens of seconds.
AUTO_ENSEMBLE_HELD_OUT = 5
AUTO_ENSEMBLE_MAX_SAMPLES = 20_000


class Averaging:
    """How many cascades a fit averages, and the averaged fit itself."""

    def _n_members(self, n_samples: int) -> int:
        """How many cascades the fit averages: ``n_estimators``, where 'auto' (on the ``default``
        preset with ``early_stopping='auto'``) is :data:`AUTO_ENSEMBLE` for data too small to hold
        a share out, :data:`AUTO_ENSEMBLE_HELD_OUT` for a classifier that holds data out (up to
        :data:`AUTO_ENSEMBLE_MAX_SAMPLES` samples), else 1 (a paper preset, an explicit
        early_stopping, and a warm start -- which continues one run -- keep one cascade)."""
        n = self.n_estimators
        if is_auto(n):
            if self.preset != "default" or not is_auto(self.early_stopping) or self.warm_start:
                return 1
            if not self._uses_validation(n_samples):
                return AUTO_ENSEMBLE
            held_out = not self._regression and n_samples <= AUTO_ENSEMBLE_MAX_SAMPLES
            return AUTO_ENSEMBLE_HELD_OUT if held_out else 1
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the 'n_estimators' parameter must be 'auto' or a positive int; got {n!r} instead")
        if n > 1 and self.warm_start:
            raise ValueError("warm_start continues one run: n_estimators must be 1 or 'auto' with warm_start=True")
        return int(n)

    def _fit_ensemble(self, members: int, X, Y, targets, sample_weight, backend, callbacks):
        """An averaged fit's members (:meth:`_fit_members`), with ``candidate_activations='auto'``
        chosen between the preset's pool and :data:`ALTERNATIVE_POOL` by the *average's* loss on
        its out-of-bag rows (:meth:`_oob_outputs`; both ensembles draw the same resamples, so
        the same rows): the preset's pool unless the other's is clearly lower
        (:func:`_clearly_lower`, :data:`POOL_SWITCH_Z`). Not member 0's own held-out loss: on
        make_hastie_10_2 Gaussian members each fit their held-out rows clearly better (z 3.6 to
        5.2) while their average's test log-loss was worse (.170 vs .126): members that agree
        average into an overconfident network. Each pool's ensemble is a full fit (twice the
        runs); callbacks and progress see the chosen one, run again identically for them (so
        three ensembles' time when they are given)."""
        _, pools = self._choice_grids(len(X), self._config(len(X), targets).validation_fraction)
        if not pools:
            return self._fit_members(members, X, Y, targets, sample_weight, backend, callbacks, None, self.max_time)
        budget = None if self.max_time is None else self.max_time / len(pools)
        fits, chosen_l2 = {}, {}
        for pool in pools:
            fits[pool] = self._fit_members(members, X, Y, targets, sample_weight, backend, None, pool, budget,
                                           quiet=True)
            chosen_l2[pool] = self.input_l2_scores_
        outputs = {p: self._oob_outputs(states, oob, X) for p, (states, oob) in fits.items()}
        seen = outputs[pools[0]][0]  # (the same rows for both: the same resamples)
        losses, w = {}, None
        if seen is not None:  # (None: no row left out of every resample, nothing to choose on)
            losses = {p: self._losses(out, np.asarray(Y, dtype=np.float64)[seen], fits[p][0][0].config)
                      for p, (_, out) in outputs.items()}
            w = None if sample_weight is None else np.asarray(sample_weight)[seen]
        clear = bool(losses) and clearly_lower(losses[pools[1]], losses[pools[0]], w, POOL_SWITCH_Z)
        pool = pools[1] if clear else pools[0]
        scores = {",".join(p): float(np.average(loss, weights=w)) for p, loss in losses.items()} or None
        if callbacks or self.verbose:
            fits[pool] = self._fit_members(members, X, Y, targets, sample_weight, backend, callbacks, pool, budget)
        self.input_l2_scores_, self.pool_losses_ = chosen_l2[pool], scores
        return fits[pool]

    def _fit_members(self, members: int, X, Y, targets, sample_weight, backend, callbacks, pool, budget,
                     quiet=False):
        """The member runs of an averaged fit with candidate pool ``pool`` (None: the
        parameter's): member k trains on a bootstrap resample of the rows (indices from stream
        (5, k) of the estimator's seed, its own run seeded from stream (4, k)) to the end of its
        own growth. With held-out data a member validates on its out-of-bag rows (a share of its
        resample would hold copies of its training rows) and is not refit; ``input_l2='auto'`` is
        chosen once, on member 0's rows (the same rule as a single fit's), and shared by every
        member. ``budget`` seconds are shared out evenly between the runs. Callbacks and
        progress see each member's run in turn (member 0's chosen run), and are finished once,
        with the last (``quiet``: no progress lines). Returns the members' states and their
        out-of-bag rows (None for a member without)."""
        from ..seeds import derived_seed

        extra = list(callbacks or ())
        progress = [Progress(type(self).__name__)] if self.verbose and not quiet else []
        n = len(X)
        sw = None if sample_weight is None else np.asarray(sample_weight)
        l2_grid, _ = self._choice_grids(n, self._config(n, targets).validation_fraction)
        runs = members - 1 + max(len(l2_grid), 1)
        seconds = None if budget is None else budget / runs
        states, oob_rows, status, engine, changes = [], [], "FAILED", None, {}
        self.input_l2_scores_ = self.pool_losses_ = None
        try:
            for k in range(members):
                rows = np.random.default_rng(derived_seed(self.seed_, 5, k)).integers(0, n, n)
                cfg = self._config(n, targets, input_l2=changes.get("input_l2"), pool=pool)
                cfg = cfg.replace(seed=derived_seed(self.seed_, 4, k), refit=False)
                held, oob = None, None
                if cfg.validation_fraction > 0:
                    oob = np.setdiff1d(np.arange(n), rows)
                    if len(oob) and (sw is None or sw[oob].sum() > 0):
                        held = (X[oob], Y[oob]) if sw is None else (X[oob], Y[oob], sw[oob])
                    else:
                        cfg, oob = cfg.replace(validation_fraction=0.0), None
                oob_rows.append(oob)
                data = (X[rows], Y[rows], targets, None if sw is None else sw[rows], held)
                for p in progress:
                    p.member = f"{k + 1}/{members}"
                engine = None
                if k == 0 and l2_grid and held is not None:
                    def fit_one(value, _pool, cfg=cfg, data=data):
                        return self._member_run(cfg.replace(input_l2=value), data, backend, seconds)

                    changes, engine = self._choose(l2_grid, (), fit_one, None)
                    cfg = cfg.replace(**changes)
                    if progress or extra:
                        engine = None  # (run again, identically, for the callbacks to see)
                if engine is None:
                    engine = self._member_run(cfg, data, backend, seconds, progress + extra)
                states.append(engine.state)
            status = "FINISHED" if all(st.done for st in states) else "KILLED"
        finally:
            for cb in extra:
                if hasattr(cb, "finish") and engine is not None:
                    cb.finish(engine.state, status)
        return states, oob_rows

    def _member_run(self, cfg, data, backend, seconds, callbacks=()):
        """One member's run to its end on ``data`` = (X, Y, targets, sample_weight, held-out or None)."""
        from ..trainer import run, start

        X, Y, targets, sw, held = data
        engine = start(cfg, X, Y, backend=backend, targets=targets, sample_weight=sw, validation=held)
        run(engine, stop_at_epoch=self.max_epochs, max_seconds=seconds, callbacks=list(callbacks))
        return engine

    def _oob_outputs(self, states, oob_rows, X):
        """(rows seen, outputs) of an averaged fit on its out-of-bag rows: each row predicted by
        the mean net input of the members that did not draw it (averaged as ``network_`` averages
        them, as scikit-learn's ``oob_score_`` of a bagging ensemble); rows every member drew are
        left out. (None, None) when no member held rows out."""
        import torch

        from ..kernels import get_activation

        Xt = torch.as_tensor(X, dtype=torch.float64)  # (fit's own float32 copy: writable)
        total = torch.zeros(len(X), states[0].network.n_outputs, dtype=torch.float64)
        count = torch.zeros(len(X), dtype=torch.float64)
        for state, rows in zip(states, oob_rows):
            if rows is None:
                continue
            net, idx = state.best_network(), torch.as_tensor(rows)
            with torch.no_grad():
                total[idx] += net.values(Xt[idx], torch.float64) @ net.output_weights.t().to(torch.float64)
            count[idx] += 1
        seen = (count > 0).numpy()
        if not seen.any():
            return None, None
        mean = total[seen] / count[seen].unsqueeze(1)
        out = torch.empty_like(mean)
        get_activation(states[0].network.output_activation).forward(mean, out)
        return seen, out.numpy()

    def _oob_score(self, states, oob_rows, X, Y, sample_weight):
        """The averaged fit's score (accuracy, or R^2) on its out-of-bag rows
        (:meth:`_oob_outputs`); None when no member held rows out."""
        seen, out = self._oob_outputs(states, oob_rows, X)
        if seen is None:
            return None
        weights = None if sample_weight is None else np.asarray(sample_weight)[seen]
        return float(self._score_outputs(out, np.asarray(Y, dtype=np.float64)[seen], weights))

    def _set_ensemble(self, states) -> None:
        """An averaged fit's attributes: ``network_`` is the members' average (one cascade,
        :func:`cascor.network.average`), ``members_`` their training states; the per-run
        attributes (``state_``, ``history_``, ``loss_curve_``) describe the first member."""
        from ..network import average

        scores = self.input_l2_scores_, self.pool_losses_  # (member 0's choices, shared by every member)
        self._set_fitted(states[0])
        self.input_l2_scores_, self.pool_losses_ = scores
        self.members_ = list(states)
        self.n_estimators_ = len(states)
        self.network_ = average([st.best_network() for st in states])
        self.n_hidden_units_ = self.best_n_units_ = self.network_.n_hidden
        self.converged_ = all(st.status in ("solved", "early_stopped") for st in states)
        self.n_iter_ = sum(st.counters.epoch for st in states)
