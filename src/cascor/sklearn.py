"""scikit-learn estimators: ``CascorClassifier`` and ``CascorRegressor``.

Conventions: ``__init__`` only stores parameters; ``fit`` returns ``self``; learned
attributes end in ``_``. ``random_state`` is resolved once, on the first fit, into
``seed_`` (``None`` draws fresh entropy from the OS rather than from the global NumPy RNG,
which cascor never touches). ``max_epochs`` caps the cumulative epochs of a fit; with
``warm_start=True`` the next ``fit`` on the same data continues the same run exactly
where it stopped. ``save_snapshot`` / ``from_snapshot`` round-trip a fitted estimator
through a verified HDF5 snapshot. ``backend`` / ``n_jobs`` / ``scheduler`` choose where
candidate pools are computed during ``fit`` (as the CLI's ``--backend``/``--workers``/
``--scheduler``); they change the time a fit takes, never the fitted model.
"""

from __future__ import annotations

import os
import secrets

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .activations import ACTIVATION_SPECS
from .config import preset as get_preset
from .datasets import decode_outputs, encode_targets
from .errors import DataError


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


class _CascorBase(BaseEstimator):
    _regression = False

    def __init__(self, preset="default", max_units=None, pool_size=None, max_epochs=None, overrides=None,
                 random_state=None, warm_start=False, backend="local", n_jobs=None, scheduler=None):
        self.preset = preset
        self.max_units = max_units
        self.pool_size = pool_size
        self.max_epochs = max_epochs
        self.overrides = overrides
        self.random_state = random_state
        self.warm_start = warm_start
        self.backend = backend
        self.n_jobs = n_jobs
        self.scheduler = scheduler

    def _make_backend(self):
        """The fit's backend, by name (an estimator holds no live workers: it is cloned and pickled)."""
        from .parallel import make_backend

        if self.n_jobs is not None and not isinstance(self.n_jobs, (int, np.integer)):
            raise ValueError(f"the 'n_jobs' parameter must be None or an int; got {self.n_jobs!r} instead")
        workers = None if self.n_jobs is None else int(self.n_jobs)
        if workers is not None and workers < 0:
            workers = max(1, (os.cpu_count() or 1) + 1 + workers)  # joblib's convention: -1 = every core
        return make_backend(self.backend, workers=workers, scheduler=self.scheduler)

    def _config(self):
        cfg = get_preset(self.preset)
        changes = dict(self.overrides or {})
        if self.max_units is not None:
            changes["max_units"] = self.max_units
        if self.pool_size is not None:
            changes["pool_size"] = self.pool_size
        if self._regression:
            changes.setdefault("output_activation", "linear")
            changes.setdefault("error_measure", "index")
        return cfg.replace(seed=self.seed_, **changes)

    def _train(self, X, Y, targets):
        from .trainer import resume, run, start

        backend = self._make_backend()
        try:
            if self.warm_start and hasattr(self, "state_"):
                engine = resume(self.state_, X, Y, backend=backend)
            else:
                if not hasattr(self, "seed_") or not self.warm_start:
                    self.seed_ = _resolve_seed(self.random_state)
                engine = start(self._config(), X, Y, backend=backend)
                engine.state.targets = targets
            run(engine, stop_at_epoch=self.max_epochs)
            self.backend_ = backend.settings()  # where this fit's candidate pools were computed
        finally:
            backend.close()
        self._set_fitted(engine.state)
        return self

    def _set_fitted(self, state):
        self.state_ = state
        self.network_ = state.network
        self.n_hidden_units_ = state.network.n_hidden
        self.history_ = state.history.to_dict()
        self.converged_ = state.status == "solved"
        self.n_features_in_ = state.network.n_inputs

    def _outputs(self, X):
        import torch

        check_is_fitted(self, "state_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            return self.network_(torch.as_tensor(X), dtype=torch.float64).numpy()

    # -- snapshots -------------------------------------------------------------------------
    def save_snapshot(self, path: str) -> str:
        """Write the fitted run (complete training state) to ``path``; returns its content digest."""
        from .snapshot import save

        check_is_fitted(self, "state_")
        self.state_.targets = dict(self.state_.targets, scaling=getattr(self, "_scaling", None))
        return save(self.state_, path)

    @classmethod
    def from_snapshot(cls, path: str, **params):
        """An estimator fitted from a snapshot; ``warm_start=True`` lets ``fit`` continue that run."""
        from .snapshot import load

        state = load(path).state
        est = cls(**params)
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

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        check_classification_targets(y)
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
            activation = get_preset(self.preset).replace(**(self.overrides or {})).output_activation
        spec = ACTIVATION_SPECS[activation]
        Y = encode_targets(y, classes, spec.low, spec.high)
        targets = {"task": "classification", "classes": [c.item() if hasattr(c, "item") else c for c in classes]}
        return self._train(X.astype(np.float32), Y, targets)

    def _restore_targets(self, targets):
        self.classes_ = np.asarray(targets["classes"])

    def predict(self, X):
        out = self._outputs(X)
        spec = ACTIVATION_SPECS[self.network_.output_activation]
        return decode_outputs(out, self.classes_, spec.low, spec.high)

    def predict_proba(self, X):
        """Outputs mapped to [0, 1] and normalised; argmax agrees with ``predict``."""
        out = self._outputs(X)
        spec = ACTIVATION_SPECS[self.network_.output_activation]
        p = np.clip((out - spec.low) / (spec.high - spec.low), 0.0, 1.0)
        if len(self.classes_) == 2:
            return np.hstack([1.0 - p, p])
        p = p + 1e-12
        return p / p.sum(axis=1, keepdims=True)


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

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
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
        return self._train(X.astype(np.float32), ((Y - mean) / scale).astype(np.float32), targets)

    def _restore_targets(self, targets):
        self._scaling = tuple(targets.get("scaling") or ([0.0], [1.0]))

    def predict(self, X):
        out = self._outputs(X)
        mean, scale = (np.asarray(v) for v in self._scaling)
        pred = out * scale + mean
        return pred[:, 0] if pred.shape[1] == 1 and getattr(self, "_y_ndim", 1) == 1 else pred
