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
out, the candidate pool and (up to 20,000 samples) ``input_l2`` are chosen on them (``input_l2_``,
``candidate_activations_`` and their held-out scores), and candidate phases train on at most
32,768 rows (``candidate_rows='auto'``: it pays for the pool choice on large data). ``backend`` /
``n_jobs`` / ``scheduler`` choose where candidate pools are computed during ``fit`` (as the CLI's
``--backend``/``--workers``/``--scheduler``); they change the time a fit takes, never the fitted
model.
"""

from __future__ import annotations

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
from .estimators.choice import (ALTERNATIVE_POOL, INPUT_L2_AUTO_MAX_SAMPLES, INPUT_L2_AUTO_MIN_HELD_OUT, INPUT_L2_GRID,
                                POOL_SWITCH_Z, HeldOutChoices)
from .estimators.common import Progress, is_auto
from .estimators.ensemble import AUTO_ENSEMBLE, AUTO_ENSEMBLE_HELD_OUT, AUTO_ENSEMBLE_MAX_SAMPLES, Averaging

# (the choices' and averaged fits' constants are documented where they are used; named here too)
__all__ = ["CascorClassifier", "CascorRegressor", "ALTERNATIVE_POOL", "AUTO_ENSEMBLE", "AUTO_ENSEMBLE_HELD_OUT",
           "AUTO_ENSEMBLE_MAX_SAMPLES", "INPUT_L2_AUTO_MAX_SAMPLES", "INPUT_L2_AUTO_MIN_HELD_OUT", "INPUT_L2_GRID",
           "POOL_SWITCH_Z"]


# What the estimators add on the default preset besides config.recommended (the CLI's outputs):
# input_l2 and the candidate pool chosen on held-out data, and candidate phases on a row subset
# on large data.
ESTIMATOR_EXTRAS = {"input_l2": "auto", "candidate_activations": "auto", "candidate_rows": "auto"}
# candidate_rows='auto': candidate phases on at most this many rows (a no-op below it). Alone it
# costs accuracy (docs/results.md, "Session 18": 0.1-0.9 points at 0.4-0.5 of the time on three
# 100k-row sets); it is what pays for the pool choice on large data, which runs two fits: with
# both, the three sets took about the time one fit on every row took and gained .9838 -> .9858 and
# .9032 -> .9314 in accuracy, friedman1 R^2 .9568 -> .9559.
LARGE_DATA_CANDIDATE_ROWS = 32768


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
class _CascorBase(HeldOutChoices, Averaging, BaseEstimator):
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
        pool given here, else the preset's; ``candidate_rows='auto'``
        :data:`LARGE_DATA_CANDIDATE_ROWS`."""
        cfg = get_preset(self.preset)
        changes = {**self._estimator_defaults(), **(self.overrides or {})}
        for name in CONFIG_PARAMS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        if is_auto(changes.get("input_l2")):
            changes["input_l2"] = 0.0 if input_l2 is None else input_l2
        if is_auto(changes.get("candidate_rows")):
            changes["candidate_rows"] = LARGE_DATA_CANDIDATE_ROWS
        if is_auto(changes.get("candidate_activations")):
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
            progress = [Progress(type(self).__name__)] if self.verbose else []
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
