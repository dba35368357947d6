"""scikit-learn estimators: ``CascorClassifier`` and ``CascorRegressor``.

Conventions: ``__init__`` only stores parameters; ``fit`` returns ``self``; learned
attributes end in ``_``. ``random_state`` is resolved once, on the first fit, into
``seed_`` (``None`` draws fresh entropy from the OS rather than from the global NumPy RNG,
which cascor never touches). ``max_epochs`` caps the cumulative epochs of a fit; with
``warm_start=True`` the next ``fit`` on the same data continues the same run exactly
where it stopped. ``save_snapshot`` / ``from_snapshot`` round-trip a fitted estimator
through a verified HDF5 snapshot (a fit of one run). ``n_estimators`` ('auto': 20 on data too
small to hold a share out, 5 for a classifier that holds data out) averages cascades fitted on
bootstrap resamples into one network (``network_``, the members' runs in ``members_``, the
average's out-of-bag score in ``oob_score_``). On the ``default`` preset, where enough rows are held
out, ``input_l2`` and the candidate pool are chosen on them (``input_l2_``, ``candidate_activations_``
and their held-out scores). ``backend`` / ``n_jobs`` / ``scheduler`` choose where
candidate pools are computed during ``fit`` (as the CLI's ``--backend``/``--workers``/
``--scheduler``); they change the time a fit takes, never the fitted model.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
from dataclasses import fields

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .activations import ACTIVATION_SPECS
from .config import (AUTO_VALIDATION_SAMPLES, DEFAULT_VALIDATION_FRACTION, REGRESSION_OUTPUT_STEP,
                     VALIDATED_ERROR_INDEX_THRESHOLD, CascorConfig, cross_entropy_output, recommended)
from .config import preset as get_preset
from .datasets import decode_outputs, encode_targets
from .errors import DataError, StateError


# What the estimators add on the default preset besides config.recommended (the CLI's outputs):
# input_l2 and the candidate pool chosen on held-out data.
ESTIMATOR_EXTRAS = {"input_l2": "auto", "candidate_activations": "auto"}


class _Progress:
    """verbose=1: one line per installed unit on stderr (as scikit-learn's estimators print);
    an averaged fit names the member cascade each line is about (``member``: "2/5")."""

    def __init__(self, name: str):
        self.name = name
        self.member = None

    def __call__(self, engine, event):
        st = engine.state
        if event == "installed" or st.done:
            s = st.history.scores
            val = f", validation score {s['val_score'][-1]:.4f}" if st.validation is not None and s["val_score"] else ""
            what = f"unit {st.network.n_hidden} installed" if event == "installed" else f"done ({st.status})"
            who = self.name if self.member is None else f"{self.name} [cascade {self.member}]"
            print(f"{who}: epoch {st.counters.epoch}: {what}{val}", file=sys.stderr, flush=True)
        return None


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def _writable(X: np.ndarray) -> np.ndarray:
    """``X``, copied if read-only (a memory map): torch warns on tensors over read-only memory."""
    return X if X.flags.writeable else X.copy()


def _probabilities(out: np.ndarray, config) -> np.ndarray:
    """Class probabilities from a classifier's outputs (one column: two classes). With
    cross-entropy outputs the network's own; otherwise the outputs mapped to [0, 1] and normalised."""
    if config.output_loss == "cross_entropy":
        return np.hstack([1.0 - out, out]) if out.shape[1] == 1 else out
    spec = ACTIVATION_SPECS[config.output_activation]
    p = np.clip((out - spec.low) / (spec.high - spec.low), 0.0, 1.0)
    if out.shape[1] == 1:
        return np.hstack([1.0 - p, p])
    p = p + 1e-12
    return p / p.sum(axis=1, keepdims=True)


def _clearly_lower(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None, z: float) -> bool:
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


def _resolve_seed(random_state) -> int:
    if random_state is None:
        return secrets.randbits(63)
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(f"the 'random_state' parameter must be None, an int, a RandomState or a Generator; got {random_state!r} instead")


# Every config field but the seed (``random_state``) is a constructor parameter; None takes the
# preset's value. Written out (not generated) so help() and get_params() show them plainly.
# (``refit`` is the estimators' own parameter, with 'auto'; the config records what it decided.)
CONFIG_PARAMS = tuple(f.name for f in fields(CascorConfig) if f.name not in ("seed", "refit"))

# early_stopping="auto" holds out data when a fit has at least this many samples
# (config.AUTO_VALIDATION_SAMPLES, where the measurements are).
AUTO_EARLY_STOPPING_SAMPLES = {"classifier": AUTO_VALIDATION_SAMPLES["classification"],
                               "regressor": AUTO_VALIDATION_SAMPLES["regression"]}
# Threads for a fit: torch's default (every core) makes small problems several times slower
# than one thread (two-spirals: 1.7-3.1 s vs 0.1 s); from this many sample x feature values on,
# the caller's setting is kept.
SINGLE_THREAD_BELOW = 2_000_000
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
# candidate_activations='auto' (the estimators' default on the `default` preset), under the same
# bounds: the preset's mixed pool or Gaussian units only, chosen on the held-out rows
# (docs/results.md, "Session 17"). No pool was best everywhere: Gaussian units gained on
# make_classification's clustered classes (accuracy .856 -> .879, log-loss .386 -> .336; one
# cascade on the 100k scale set .984 -> .987, where no choice is made: above the bounds) and lost
# on two-spirals, circles (log-loss .026 -> .045) and friedman1 (R^2 .996 -> .992).
ALTERNATIVE_POOL = ("gaussian",)
# ... and only on clear evidence: the alternative's mean held-out loss must be lower by this many
# standard errors of the paired per-row difference (a one-sided test at about 2.3 %). Picking the
# lower loss outright switched on noise where the pools are close (digits, choosing folds: log-loss
# .096 -> .099, accuracy .974 -> .976).
POOL_SWITCH_Z = 2.0
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


class _CascorBase(BaseEstimator):
    _regression = False
    def _class_changes(self, changes: dict, targets: dict) -> None:
        """Config changes that depend on the classes (the classifier's output activation)."""

    def __init__(self, preset="default", *, early_stopping="auto", validation_fraction=None, n_iter_no_change=None,
                 refit="auto", n_estimators="auto", tol=None, output_l2=None, max_units=None, pool_size=None,
                 max_epochs=None, max_time=None, random_state=None,
                 warm_start=False, verbose=0, n_threads=None, backend="local", n_jobs=None, scheduler=None,
                 output_activation=None, output_epsilon=None, output_mu=None, output_decay=None,
                 output_patience=None, output_change_threshold=None, output_epochs=None, output_step=None,
                 output_loss=None, candidate_score=None,
                 candidate_activations=None, candidate_steepnesses=None, candidate_block=None, candidate_rows=None,
                 input_epsilon=None,
                 input_mu=None, input_decay=None, input_l2=None, input_patience=None, input_change_threshold=None,
                 input_epochs=None, weight_range=None, weight_multiplier=None, sigmoid_prime_offset=None,
                 error_measure=None, score_threshold=None, error_index_threshold=None, overrides=None):
        self.preset = preset
        self.early_stopping = early_stopping
        self.refit = refit
        self.n_estimators = n_estimators
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.output_l2 = output_l2
        self.max_units = max_units
        self.pool_size = pool_size
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.n_threads = n_threads
        self.backend = backend
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.output_activation = output_activation
        self.output_epsilon = output_epsilon
        self.output_mu = output_mu
        self.output_decay = output_decay
        self.output_patience = output_patience
        self.output_change_threshold = output_change_threshold
        self.output_epochs = output_epochs
        self.output_step = output_step
        self.output_loss = output_loss
        self.candidate_score = candidate_score
        self.candidate_activations = candidate_activations
        self.candidate_steepnesses = candidate_steepnesses
        self.candidate_block = candidate_block
        self.candidate_rows = candidate_rows
        self.input_epsilon = input_epsilon
        self.input_mu = input_mu
        self.input_decay = input_decay
        self.input_l2 = input_l2
        self.input_patience = input_patience
        self.input_change_threshold = input_change_threshold
        self.input_epochs = input_epochs
        self.weight_range = weight_range
        self.weight_multiplier = weight_multiplier
        self.sigmoid_prime_offset = sigmoid_prime_offset
        self.error_measure = error_measure
        self.score_threshold = score_threshold
        self.error_index_threshold = error_index_threshold
        self.overrides = overrides

    def _make_backend(self):
        """The fit's backend, by name (an estimator holds no live workers: it is cloned and pickled)."""
        from .parallel import make_backend

        if self.n_jobs is not None and not isinstance(self.n_jobs, (int, np.integer)):
            raise ValueError(f"the 'n_jobs' parameter must be None or an int; got {self.n_jobs!r} instead")
        workers = None if self.n_jobs is None else int(self.n_jobs)
        if workers is not None and workers < 0:
            workers = max(1, (os.cpu_count() or 1) + 1 + workers)  # joblib's convention: -1 = every core
        return make_backend(self.backend, workers=workers, scheduler=self.scheduler)

    def _uses_validation(self, n_samples: int) -> bool:
        if self.early_stopping not in ("auto", True, False):
            raise ValueError(f"the 'early_stopping' parameter must be 'auto', True or False; got "
                             f"{self.early_stopping!r} instead")
        if self.early_stopping == "auto":
            return n_samples >= AUTO_EARLY_STOPPING_SAMPLES["regressor" if self._regression else "classifier"]
        return bool(self.early_stopping)

    def _n_members(self, n_samples: int) -> int:
        """How many cascades the fit averages: ``n_estimators``, where 'auto' (on the ``default``
        preset with ``early_stopping='auto'``) is :data:`AUTO_ENSEMBLE` for data too small to hold
        a share out, :data:`AUTO_ENSEMBLE_HELD_OUT` for a classifier that holds data out (up to
        :data:`AUTO_ENSEMBLE_MAX_SAMPLES` samples), else 1 (a paper preset, an explicit
        early_stopping, and a warm start -- which continues one run -- keep one cascade)."""
        n = self.n_estimators
        if _is_auto(n):
            if self.preset != "default" or not _is_auto(self.early_stopping) or self.warm_start:
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

    def _estimator_defaults(self) -> dict:
        """What the estimators change on the ``default`` preset: config.RECOMMENDED (an L2
        penalty on the output weights; for the classifier, cross-entropy outputs), and
        ``input_l2='auto'`` (digits .967 -> .975, friedman1 R^2 .987 -> .997; see
        :data:`INPUT_L2_AUTO_MIN_HELD_OUT`) and ``candidate_activations='auto'`` (see
        :data:`ALTERNATIVE_POOL`). Other presets keep their papers' settings."""
        if self.preset != "default":
            return {}
        chosen = self.output_activation or (self.overrides or {}).get("output_activation")
        task = "regression" if self._regression else "classification"
        return {**recommended(task, chosen), **ESTIMATOR_EXTRAS}

    def _config(self, n_samples: int, targets: dict, input_l2: float | None = None, pool: tuple | None = None):
        """The run's config: the preset, the estimators' defaults on the ``default`` preset, then
        ``overrides``, then every parameter that is not None. ``input_l2='auto'`` takes the value
        given here (the one chosen on held-out data), else 0; ``candidate_activations='auto'`` the
        pool given here, else the preset's."""
        cfg = get_preset(self.preset)
        changes = {**self._estimator_defaults(), **(self.overrides or {})}
        for name in CONFIG_PARAMS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        if _is_auto(changes.get("input_l2")):
            changes["input_l2"] = 0.0 if input_l2 is None else input_l2
        if _is_auto(changes.get("candidate_activations")):
            changes["candidate_activations"] = cfg.candidate_activations if pool is None else tuple(pool)
        self._class_changes(changes, targets)
        if self._regression:
            changes.setdefault("output_activation", "linear")
            changes.setdefault("error_measure", "index")
            if changes["output_activation"] == "linear":
                # (config.REGRESSION_OUTPUT_STEP: the presets' step diverges on linear outputs)
                for key, value in REGRESSION_OUTPUT_STEP.items():
                    changes.setdefault(key, value)
        if self._uses_validation(n_samples):
            changes.setdefault("validation_fraction", DEFAULT_VALIDATION_FRACTION)
            if self._regression:
                changes.setdefault("error_index_threshold", VALIDATED_ERROR_INDEX_THRESHOLD)
        else:
            changes["validation_fraction"] = 0.0
        # Recorded in the run's config (so a snapshot of the fit refits when resumed elsewhere).
        changes["refit"] = self._do_refit() and changes["validation_fraction"] > 0
        return cfg.replace(seed=self.seed_, **changes)

    def _do_refit(self) -> bool:
        if self.refit not in ("auto", True, False):
            raise ValueError(f"the 'refit' parameter must be 'auto', True or False; got {self.refit!r} instead")
        # 'auto': refit unless the fit is to be continued (a refit run cannot grow further).
        # Measured (benchmarks/generalisation.py --variant, docs/results.md): never worse on the
        # ten datasets, small gains wherever data is held out (digits .963 -> .966, log-loss
        # .126 -> .116; breast_cancer log-loss .095 -> .086; diabetes R^2 .474 -> .481).
        return (not self.warm_start) if self.refit == "auto" else bool(self.refit)

    def _choice_grids(self, n_samples: int, validation_fraction: float) -> tuple[tuple, tuple]:
        """(input_l2 values, candidate pools) a fresh fit tries on its held-out rows: with at least
        :data:`INPUT_L2_AUTO_MIN_HELD_OUT` held-out rows and at most
        :data:`INPUT_L2_AUTO_MAX_SAMPLES` samples, :data:`INPUT_L2_GRID` for ``input_l2='auto'``
        and (the preset's pool, :data:`ALTERNATIVE_POOL`) for ``candidate_activations='auto'``;
        otherwise none (each 'auto' then takes the preset's value, 0 for input_l2)."""
        held_out = math.ceil(n_samples * validation_fraction)  # as validation.split_indices counts
        if n_samples > INPUT_L2_AUTO_MAX_SAMPLES or validation_fraction <= 0 or held_out < INPUT_L2_AUTO_MIN_HELD_OUT:
            return (), ()
        l2 = INPUT_L2_GRID if _is_auto(self._param("input_l2")) else ()
        pools = ()
        if _is_auto(self._param("candidate_activations")):
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
            if _clearly_lower(losses[pools[1]], losses[pools[0]], w, POOL_SWITCH_Z):
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

    def _train(self, X, Y, targets, sample_weight=None, callbacks=None):
        import torch

        from .trainer import refit, resume, run, start

        do_refit = self._do_refit()
        if self.max_time is not None and not (isinstance(self.max_time, (int, float)) and self.max_time > 0):
            raise ValueError(f"the 'max_time' parameter must be None or a positive number of seconds; got "
                             f"{self.max_time!r} instead")
        backend = self._make_backend()
        threads = torch.get_num_threads()
        n = self.n_threads if self.n_threads is not None else (1 if X.size < SINGLE_THREAD_BELOW else threads)
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the 'n_threads' parameter must be None or a positive int; got {self.n_threads!r} instead")
        torch.set_num_threads(int(n))
        try:
            members = self._n_members(len(X))
            if members > 1:
                self.seed_ = _resolve_seed(self.random_state)
                states, oob = self._fit_ensemble(members, X, Y, targets, sample_weight, backend, callbacks)
                self._set_ensemble(states)
                self.oob_score_ = self._oob_score(states, oob, X, Y, sample_weight)
                if self.verbose:
                    oob_text = "" if self.oob_score_ is None else f", out-of-bag score {self.oob_score_:.4f}"
                    print(f"{type(self).__name__}: averaged {members} cascades, {self.n_hidden_units_} units"
                          f"{oob_text}", file=sys.stderr, flush=True)
                self.backend_ = backend.settings()
                return self
            if self.warm_start and hasattr(self, "state_"):
                engine = resume(self._continued_state(len(X), targets), X, Y, backend=backend,
                                sample_weight=sample_weight)
            else:
                if not hasattr(self, "seed_") or not self.warm_start:
                    self.seed_ = _resolve_seed(self.random_state)
                l2_grid, pools = self._choice_grids(len(X), self._config(len(X), targets).validation_fraction)
                engine, changes = None, {}
                self.input_l2_scores_ = self.pool_losses_ = None
                if l2_grid or pools:
                    # max_time is shared out between the choice's runs (as between an averaged fit's)
                    runs = max(len(l2_grid), 1) * max(len(pools), 1)
                    share = None if self.max_time is None else self.max_time / runs

                    def fit_one(value, pool):
                        eng = start(self._config(len(X), targets, input_l2=value, pool=pool), X, Y, backend=backend,
                                    targets=targets, sample_weight=sample_weight)
                        run(eng, stop_at_epoch=self.max_epochs, max_seconds=share)
                        return eng

                    def held(state):  # the run's own held-out rows (every run splits alike)
                        rows = state.validation.index
                        return X[rows], Y[rows], None if sample_weight is None else np.asarray(sample_weight)[rows]

                    changes, engine = self._choose(l2_grid, pools, fit_one, held)
                if engine is None or callbacks or self.verbose or not engine.state.done:
                    # (callbacks and progress see the chosen run from its start: it is run again,
                    # identically, since a run is a function of its config, data and seed)
                    engine = start(self._config(len(X), targets, input_l2=changes.get("input_l2"),
                                                pool=changes.get("candidate_activations")), X, Y, backend=backend,
                                   targets=targets, sample_weight=sample_weight)
            extra = list(callbacks or ())
            progress = [_Progress(type(self).__name__)] if self.verbose else []
            status = "FAILED"
            chosen = None
            try:
                report = run(engine, stop_at_epoch=self.max_epochs, max_seconds=self.max_time,
                             callbacks=progress + extra)
                if do_refit and report.finished and engine.state.validation is not None:
                    # the chosen network's output layer once more on every row (held-out ones too)
                    chosen = engine.state
                    engine = refit(chosen, X, Y, backend=backend, sample_weight=sample_weight)
                    report = run(engine, callbacks=progress + extra)
                status = "FINISHED" if report.finished else "KILLED"
            finally:
                for cb in extra:
                    if hasattr(cb, "finish"):
                        cb.finish(engine.state, status)
            self.backend_ = backend.settings()  # where this fit's candidate pools were computed
        finally:
            torch.set_num_threads(threads)
            backend.close()
        self._set_fitted(engine.state, chosen)
        return self

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
        clear = bool(losses) and _clearly_lower(losses[pools[1]], losses[pools[0]], w, POOL_SWITCH_Z)
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
        from .seeds import derived_seed

        extra = list(callbacks or ())
        progress = [_Progress(type(self).__name__)] if self.verbose and not quiet else []
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
        from .trainer import run, start

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

        from .kernels import get_activation

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
        from .network import average

        scores = self.input_l2_scores_, self.pool_losses_  # (member 0's choices, shared by every member)
        self._set_fitted(states[0])
        self.input_l2_scores_, self.pool_losses_ = scores
        self.members_ = list(states)
        self.n_estimators_ = len(states)
        self.network_ = average([st.best_network() for st in states])
        self.n_hidden_units_ = self.best_n_units_ = self.network_.n_hidden
        self.converged_ = all(st.status in ("solved", "early_stopped") for st in states)
        self.n_iter_ = sum(st.counters.epoch for st in states)

    def _continued_state(self, n_samples: int, targets: dict):
        """The fitted run, for a warm start: the same config, or a larger max_units (the run grows
        further); any other changed parameter cannot apply to a run in progress and raises."""
        from .trainer import extend

        if getattr(self, "refitted_", False):
            raise ValueError("warm_start: this fit refit its output layer on all the data after choosing its size "
                             "(refit=True); it cannot grow further: set warm_start=False to fit afresh "
                             "(or refit=False)")
        old = self.state_.config
        # ('auto' keeps what it chose)
        new = self._config(n_samples, targets, input_l2=old.input_l2, pool=old.candidate_activations)
        changed = sorted(k for k, v in new.to_dict().items() if v != old.to_dict()[k] and k != "max_units")
        if changed:
            k = changed[0]
            raise ValueError(f"warm_start: the parameter {k!r} changed from {old.to_dict()[k]!r} to "
                             f"{new.to_dict()[k]!r}; a continued run keeps its config (only max_units may grow): "
                             "set warm_start=False to fit afresh")
        if new.max_units != old.max_units:
            try:
                return extend(self.state_, new.max_units)
            except StateError as exc:
                raise ValueError(f"warm_start: {exc}") from None
        return self.state_

    def _set_fitted(self, state, chosen=None):
        """``chosen``: the run that chose the size, when ``state`` is its refit (the held-out
        scores and the chosen size are that run's)."""
        self.state_ = state
        self.refitted_ = chosen is not None
        # The network to predict with: the best one seen on held-out data (a finished run was
        # already rolled back to it; a run stopped by a budget is cut back here).
        self.network_ = state.best_network()
        self.n_hidden_units_ = self.network_.n_hidden
        self.history_ = state.history.to_dict()
        scores = self.history_["scores"]
        self.converged_ = (chosen or state).status in ("solved", "early_stopped")
        self.n_features_in_ = state.network.n_inputs
        self.n_iter_ = state.counters.epoch
        self.loss_curve_ = list(scores["train_loss"])
        v = (chosen or state).validation
        self.validation_scores_ = list((chosen or state).history.scores["val_score"]) if v is not None else None
        self.best_validation_score_ = v.best_score if v is not None and v.best_n_units >= 0 else None
        self.best_n_units_ = v.best_n_units if v is not None and v.best_n_units >= 0 else self.network_.n_hidden
        self.input_l2_ = state.config.input_l2
        self.candidate_activations_ = state.config.candidate_activations
        self.members_ = [state]
        self.n_estimators_ = 1
        self.oob_score_ = None  # (an averaged fit with held-out data sets it)

    def _outputs(self, X):
        import torch

        check_is_fitted(self, "state_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            return self.network_(torch.as_tensor(_writable(X)), dtype=torch.float64).numpy()

    # -- snapshots -------------------------------------------------------------------------
    def save_snapshot(self, path: str) -> str:
        """Write the fitted run (complete training state) to ``path``; returns its content digest."""
        from .snapshot import save

        check_is_fitted(self, "state_")
        if getattr(self, "n_estimators_", 1) > 1:
            raise ValueError(f"this fit averages {self.n_estimators_} cascades (n_estimators); a snapshot holds one "
                             "run: fit with n_estimators=1 to save it, or export the averaged network "
                             "(cascor.export)")
        self.state_.targets = dict(self.state_.targets, scaling=getattr(self, "_scaling", None))
        return save(self.state_, path)

    @classmethod
    def from_snapshot(cls, path: str, **params):
        """An estimator fitted from a snapshot; ``warm_start=True`` lets ``fit`` continue that run."""
        from .snapshot import load

        state = load(path).state
        cfg = state.config.to_dict()
        # The estimator describes the run it holds: every config field from the snapshot (so a
        # warm start continues it unchanged), unless given here.
        defaults = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in CONFIG_PARAMS}
        defaults["early_stopping"] = state.validation is not None
        est = cls(**{**defaults, **params})
        est.seed_ = state.config.seed
        est._restore_targets(state.targets)
        est._set_fitted(state)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class CascorClassifier(ClassifierMixin, _CascorBase):
    """Cascade-Correlation classifier: one output for two classes, one-hot outputs otherwise."""

    def __init__(self, preset="default", *, class_weight=None, **params):
        super().__init__(preset, **params)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None, callbacks=None):
        """Fit on (X, y); ``sample_weight`` weighs each row in the output error and in the
        candidates' residual (and in the held-out score); ``class_weight`` multiplies it.
        ``callbacks`` are trainer callbacks, e.g. the loggers of :mod:`cascor.tracking`
        (``fit(X, y, callbacks=[TensorBoardLogger("runs/a")])``); a logger is closed when the fit ends."""
        from sklearn.utils.class_weight import compute_sample_weight
        from sklearn.utils.validation import _check_sample_weight

        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            sample_weight = cw if sample_weight is None else sample_weight * cw
        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"the target has only one class ({classes[0]!r}); a classifier needs at least two")
        if self.warm_start and hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
            raise DataError(f"warm_start: classes changed from {self.classes_!r} to {classes!r}")
        self.classes_ = classes
        # A warm start continues the fitted run: its targets are encoded for *its* output
        # activation (a snapshot's config may differ from this estimator's parameters).
        if self.warm_start and hasattr(self, "state_"):
            activation = self.state_.config.output_activation
        else:
            activation = self._output_activation(len(classes))
        spec = ACTIVATION_SPECS[activation]
        Y = encode_targets(y, classes, spec.low, spec.high)
        targets = {"task": "classification", "classes": [c.item() if hasattr(c, "item") else c for c in classes]}
        return self._train(X.astype(np.float32), Y, targets, sample_weight, callbacks)

    def _output_activation(self, n_classes: int) -> str:
        """The output activation: the parameter, else with cross-entropy a logistic output for
        two classes and a softmax for more, else the preset's."""
        chosen = self.output_activation or (self.overrides or {}).get("output_activation")
        if chosen:
            return chosen
        loss = self.output_loss or (self.overrides or {}).get("output_loss") \
            or self._estimator_defaults().get("output_loss") or get_preset(self.preset).output_loss
        if loss == "cross_entropy":
            return cross_entropy_output(n_classes)
        return get_preset(self.preset).output_activation

    def _class_changes(self, changes: dict, targets: dict) -> None:
        if "output_activation" not in changes:
            changes["output_activation"] = self._output_activation(len(targets["classes"]))

    def _restore_targets(self, targets):
        self.classes_ = np.asarray(targets["classes"])

    def _score_outputs(self, out, Y, sample_weight):
        """Accuracy of outputs against encoded targets (both decoded as ``predict`` decodes)."""
        from sklearn.metrics import accuracy_score

        spec = ACTIVATION_SPECS[self.network_.output_activation]
        index = np.arange(max(2, Y.shape[1]))
        return accuracy_score(decode_outputs(Y, index, spec.low, spec.high),
                              decode_outputs(out, index, spec.low, spec.high), sample_weight=sample_weight)

    def predict(self, X):
        out = self._outputs(X)
        spec = ACTIVATION_SPECS[self.network_.output_activation]
        return decode_outputs(out, self.classes_, spec.low, spec.high)

    def decision_function(self, X):
        """The output units' net inputs (before their activation): one column for two classes
        (positive: ``classes_[1]``), one per class otherwise; argmax agrees with ``predict``.
        Every output activation is increasing and centred on net input 0 (the sigmoid family)
        or row-wise monotone (softmax), so thresholds and rankings carry over."""
        import torch

        check_is_fitted(self, "state_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            net = self.network_.values(torch.as_tensor(_writable(X)), dtype=torch.float64) @ \
                self.network_.output_weights.t().to(torch.float64)
        net = net.numpy()
        return net[:, 0] if len(self.classes_) == 2 else net

    def predict_proba(self, X):
        """Class probabilities. With cross-entropy outputs (``output_loss='cross_entropy'``) these
        are the network's own (a softmax, or a logistic unit), calibrated by training; otherwise
        the outputs mapped to [0, 1] and normalised. Argmax agrees with ``predict``."""
        return _probabilities(self._outputs(X), self.state_.config)

    def _losses(self, out, Y, config):
        """Each row's log-loss of the outputs' probabilities against encoded targets (clipped
        as scikit-learn's ``log_loss`` clips: a probability of 0 costs -log(eps), not inf)."""
        spec = ACTIVATION_SPECS[config.output_activation]
        index = np.arange(max(2, Y.shape[1]))
        p = _probabilities(out, config)
        right = p[np.arange(len(p)), decode_outputs(Y, index, spec.low, spec.high)]
        return -np.log(np.clip(right, np.finfo(p.dtype).eps, 1.0))


class CascorRegressor(RegressorMixin, _CascorBase):
    """Cascade-Correlation regressor: linear outputs, ErrorIndex stopping criterion.

    Targets are standardised internally (mean 0, unit variance) so the ErrorIndex threshold
    means the same thing on every problem; predictions are mapped back.
    """

    _regression = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y, sample_weight=None, callbacks=None):
        """Fit on (X, y); ``sample_weight`` weighs each row, ``callbacks`` follow the run (see
        :class:`CascorClassifier`)."""
        from sklearn.utils.validation import _check_sample_weight

        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        Y = y.reshape(len(y), -1).astype(np.float64)
        if self.warm_start and hasattr(self, "_scaling"):
            mean, scale = (np.asarray(v) for v in self._scaling)
        else:
            mean = Y.mean(axis=0)
            scale = Y.std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            self._scaling = (mean.tolist(), scale.tolist())
        self._y_ndim = y.ndim
        targets = {"task": "regression", "classes": None, "scaling": self._scaling}
        return self._train(X.astype(np.float32), ((Y - mean) / scale).astype(np.float32), targets, sample_weight,
                           callbacks)

    def _restore_targets(self, targets):
        self._scaling = tuple(targets.get("scaling") or ([0.0], [1.0]))

    def _score_outputs(self, out, Y, sample_weight):
        """R^2 of outputs against the standardised targets (R^2 does not change under the
        per-output affine map back to the targets' scale)."""
        from sklearn.metrics import r2_score

        return r2_score(Y, out, sample_weight=sample_weight)

    def _losses(self, out, Y, config):
        """Each row's squared error, summed over the outputs (standardised targets)."""
        return ((out - Y) ** 2).sum(axis=1)

    def predict(self, X):
        out = self._outputs(X)
        mean, scale = (np.asarray(v) for v in self._scaling)
        pred = out * scale + mean
        return pred[:, 0] if pred.shape[1] == 1 and getattr(self, "_y_ndim", 1) == 1 else pred


def _with_class_weight():
    """The classifier's signature: every base parameter plus ``class_weight`` (scikit-learn reads
    an estimator's parameters from ``inspect.signature(cls.__init__)``; writing the forty base
    parameters out twice would let the two lists drift apart)."""
    import inspect

    base = inspect.signature(_CascorBase.__init__)
    extra = inspect.Parameter("class_weight", inspect.Parameter.KEYWORD_ONLY, default=None)
    CascorClassifier.__init__.__signature__ = base.replace(parameters=[*base.parameters.values(), extra])


_with_class_weight()
