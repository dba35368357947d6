"""What an exporter writes: a trained cascade and what its outputs mean, as a torch-free
:class:`cascor.inference.Model`, built from a snapshot, a training state, a fitted estimator, or a
scikit-learn ``Pipeline`` of per-feature scalers ending in one.

Every format is generated from this one description, so the ONNX graph, the C source and the
NumPy file compute the same function; the NumPy model is also the reference the exporters'
checks compare against.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ExportError
from ..inference import Model

# Pipeline steps an export can fold into its input transform: each is x * a + b per feature.
AFFINE_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")


def model_from(source) -> Model:
    """The exportable model of ``source``: a snapshot path, a ``TrainState``, a fitted
    ``CascorClassifier`` / ``CascorRegressor``, or a ``Pipeline`` of scalers ending in one.

    A snapshot or state exports the network it would predict with (the best on held-out data for
    a run that has some, else the current one), reading the data's own columns (a run's input
    scaling is folded in); an estimator exports ``network_`` with its class
    labels or target scaling, and a pipeline adds its scalers' transform, so the exported outputs
    equal the estimator's ``predict_proba`` / ``predict``."""
    from ..state import TrainState

    if isinstance(source, (str, os.PathLike)):
        from ..snapshot import load

        return _from_state(load(os.fspath(source)).state)
    if isinstance(source, TrainState):
        return _from_state(source)
    from sklearn.pipeline import Pipeline

    if isinstance(source, Pipeline):
        return _from_pipeline(source)
    from ..sklearn import _CascorBase

    if isinstance(source, _CascorBase):
        return _from_estimator(source)
    raise ExportError(f"cannot export a {type(source).__name__}: expected a snapshot path, a TrainState, "
                      "a fitted CascorClassifier/CascorRegressor, or a Pipeline ending in one")


def network_parts(net) -> dict:
    """The arrays of a ``CascadeNetwork`` as :class:`Model` keyword arguments (float64)."""
    return {
        "hidden_weights": [u.weights.double().numpy() for u in net.units],
        "hidden_activations": [u.activation for u in net.units],
        "hidden_steepness": [u.steepness for u in net.units],
        "output_weights": net.output_weights.double().numpy(),
        "output_activation": net.output_activation,
    }


def _meaning(targets: dict, output_loss: str, n_outputs: int) -> dict:
    """What the outputs mean: class labels and how probabilities are read, or a target scaling."""
    if targets.get("task") == "classification":
        # (as predict_proba: the config allows cross-entropy only on logistic or softmax outputs)
        probabilities = "native" if output_loss == "cross_entropy" else "normalised"
        return {"task": "classification", "classes": np.asarray(targets["classes"]), "probabilities": probabilities}
    scaling = targets.get("scaling")
    if scaling:
        mean, scale = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n_outputs,)) for v in scaling)
        return {"task": "regression", "target_mean": mean, "target_scale": scale}
    return {"task": "regression"}


def _from_state(state) -> Model:
    net = state.best_network()
    if state.input_scaling is not None:  # the run standardised its data's columns (format 1.5)
        scale, offset = state.input_scaling.affine()
    else:
        scale, offset = np.ones(net.n_inputs), np.zeros(net.n_inputs)
    return Model(input_scale=scale, input_offset=offset, **network_parts(net),
                 **_meaning(state.targets, state.config.output_loss, net.n_outputs))


def _from_estimator(est, scale=None, offset=None, feature_names=None) -> Model:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(est, "state_")
    except NotFittedError:
        raise ExportError(f"this {type(est).__name__} is not fitted yet: call fit before exporting") from None
    net = est.network_
    targets = {"task": "regression" if est._regression else "classification",
               "classes": None if est._regression else est.classes_,
               "scaling": getattr(est, "_scaling", None)}
    if feature_names is None and hasattr(est, "feature_names_in_"):
        feature_names = list(est.feature_names_in_)
    n = net.n_inputs
    return Model(input_scale=np.ones(n) if scale is None else scale, input_offset=np.zeros(n) if offset is None else offset,
                 feature_names=feature_names, **network_parts(net),
                 **_meaning(targets, est.state_.config.output_loss, net.n_outputs))


def _affine(step) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scaler as (a, b) with transform(x) = x * a + b."""
    name = type(step).__name__
    if name not in AFFINE_SCALERS or not type(step).__module__.startswith("sklearn."):
        raise ExportError(f"cannot export the pipeline step {name}: an export folds only per-feature scalers "
                          f"({', '.join(AFFINE_SCALERS)}) into its input transform")
    if name == "StandardScaler":
        mean = step.mean_ if step.with_mean else 0.0
        scale = step.scale_ if step.with_std else 1.0
        a = 1.0 / np.asarray(scale, dtype=np.float64)
        return np.broadcast_to(a, (step.n_features_in_,)), np.broadcast_to(-np.asarray(mean) * a, (step.n_features_in_,))
    if name == "MinMaxScaler":
        if step.clip:
            raise ExportError("cannot export MinMaxScaler(clip=True): clipping is not a per-feature scaling")
        return np.asarray(step.scale_, dtype=np.float64), np.asarray(step.min_, dtype=np.float64)
    if name == "MaxAbsScaler":
        return 1.0 / np.asarray(step.scale_, dtype=np.float64), np.zeros(step.n_features_in_)
    center = step.center_ if step.with_centering else 0.0
    scale = step.scale_ if step.with_scaling else 1.0
    a = 1.0 / np.asarray(scale, dtype=np.float64)
    return np.broadcast_to(a, (step.n_features_in_,)), np.broadcast_to(-np.asarray(center) * a, (step.n_features_in_,))


def _from_pipeline(pipe) -> Model:
    from ..sklearn import _CascorBase

    *pre, (_, last) = pipe.steps
    if not isinstance(last, _CascorBase):
        raise ExportError(f"cannot export a pipeline ending in {type(last).__name__}: the last step must be a "
                          "CascorClassifier or CascorRegressor")
    a, b = None, None
    for _, step in pre:
        if step is None or step == "passthrough":
            continue
        sa, sb = _affine(step)
        # (x * a + b) * sa + sb
        a, b = (sa.copy(), sb.copy()) if a is None else (a * sa, b * sa + sb)
    names = list(pipe.feature_names_in_) if hasattr(pipe, "feature_names_in_") else None
    return _from_estimator(last, a, b, names)
