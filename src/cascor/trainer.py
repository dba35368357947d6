"""The loop around ``Engine.step``: when to stop, whom to tell.

Kept apart from the engine so that stopping rules (epoch budgets, a signal, a snapshot
policy) never leak into the algorithm: the engine only knows how to run one epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from .activations import ACTIVATION_SPECS
from .config import CascorConfig
from .engine import Engine, as_sample_weights, as_training_tensors
from .errors import DataError, StateError
from .quickprop import QuickpropSlots
from .state import TrainState, new_state
from .validation import ValidationState, class_labels, split_indices, training_rows

# A callback sees the engine and the event of the step just run; returning True stops the run
# at this epoch boundary.
Callback = Callable[[Engine, str], Optional[bool]]


@dataclass
class RunReport:
    finished: bool  # the state machine reached 'done'
    stopped_early: bool  # a callback or a budget stopped it at an epoch boundary
    steps: int
    seconds: float  # wall time inside the training loop only


def start(config: CascorConfig, X, Y, backend=None, *, targets: dict | None = None, validation=None,
          sample_weight=None, input_scaling=None) -> Engine:
    """A fresh run on (X, Y); ``backend`` computes candidate pools (default: in-process).

    ``targets`` says what the outputs mean ({"task": "classification" | "regression",
    "classes": ...}); it decides the score (accuracy or R^2) and stratifies the split.
    ``validation`` is held-out (X_val, Y_val); without it, ``config.validation_fraction`` of
    (X, Y) is held out (stream (2,) of the seed), and the held-out row numbers are kept in the
    state so :func:`resume` on the same (X, Y) splits identically. ``sample_weight``: one weight
    per row of (X, Y) (split with them; ``validation`` may carry its own as a third item).
    ``input_scaling``: the :class:`~cascor.inputs.InputScaling` that made X (and the held-out
    data) from the data's own columns, kept in the state for whoever reads the data again;
    X is used as given.
    """
    X, Y = as_training_tensors(X, Y)
    w = as_sample_weights(sample_weight, X.shape[0])
    targets = dict(targets or {"task": "regression", "classes": None})
    held = None
    if validation is not None:
        Xv, Yv = as_training_tensors(validation[0], validation[1])
        vstate = ValidationState(Xv.shape[0], X.shape[0])
        held = (Xv, Yv) + tuple(validation[2:3])  # (the held-out rows' own weights, if given)
    elif config.validation_fraction > 0:
        spec = ACTIVATION_SPECS[config.output_activation]
        strata = class_labels(Y, spec.low, spec.high).numpy() if targets.get("task") == "classification" else None
        train, val = split_indices(X.shape[0], config.validation_fraction, config.seed, strata)
        vstate = ValidationState(len(val), X.shape[0], index=val)
        (X, Y, w), held = _split(X, Y, w, train, val)
    state = new_state(config, X.shape[1], Y.shape[1], X.shape[0])
    state.targets = targets
    if input_scaling is not None:
        if input_scaling.n_inputs != X.shape[1]:
            raise DataError(f"the input scaling has {input_scaling.n_inputs} columns; the data has {X.shape[1]}")
        state.input_scaling = input_scaling
    if held is not None:
        state.validation = vstate
    return Engine(state, X, Y, backend, validation=held, sample_weight=w)


def resume(state: TrainState, X, Y, backend=None, *, validation=None, sample_weight=None) -> Engine:
    """Continue a run from its state tree; nothing is re-initialised. (X, Y) are the data given
    to :func:`start` (a held-out part is split off again by the stored row numbers);
    ``validation`` the separate held-out data, if the run was started with some; ``sample_weight``
    the weights it was started with (a run's data digest covers them)."""
    v = state.validation
    w = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32).reshape(-1)
    if v is not None and v.index is not None:
        if validation is not None:
            raise DataError("this run holds out part of its training data; do not pass separate validation data")
        X, Y = as_training_tensors(X, Y)
        if X.shape[0] != v.n_total:
            raise DataError(f"the run was started on {v.n_total} patterns (holding out {v.n_patterns}); "
                            f"got {X.shape[0]}: resume with the same data")
        if w is not None and w.shape[0] != X.shape[0]:
            raise DataError(f"sample_weight has {w.shape[0]} entries for {X.shape[0]} patterns")
        (X, Y, w), validation = _split(X, Y, w, training_rows(v.index, X.shape[0]), v.index)
    return Engine(state, X, Y, backend, validation=validation, sample_weight=w)


def _split(X, Y, w, train, val) -> tuple[tuple, tuple]:
    """((X, Y, w) of the training rows, (X, Y[, w]) of the held-out rows): the one split that
    :func:`start` makes and :func:`resume` repeats from the stored row numbers."""
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    held = (X[val], Y[val]) + (() if w is None else (w[val],))
    return (X[train].contiguous(), Y[train].contiguous(), None if w is None else w[train].contiguous()), held


def extend(state: TrainState, max_units: int) -> TrainState:
    """The run with room for ``max_units`` units; a run that stopped at its unit limit goes on
    growing (its next step is a candidate phase against the residual it ended with).

    Refused (StateError) for a smaller limit, and for a run that ended on an earlier, better
    network (rolled back on held-out data: its residual is not that network's).
    """
    if max_units < state.config.max_units:
        raise StateError(f"max_units can only grow on a continued run ({state.config.max_units} -> {max_units})")
    if state.refitted:
        raise StateError(f"the run chose {state.network.n_hidden} units on held-out data and then refit its output "
                         "layer on all its data; it cannot grow further: continue from a snapshot taken during its "
                         "growth, or train afresh with the larger max_units (or without the refit: --no-refit, "
                         "refit=False)")
    grown = max(state.history.scores["hidden_units"], default=state.network.n_hidden)
    if state.status == "max_units" and state.network.n_hidden < grown:
        raise StateError(f"the run ended on its best network ({state.network.n_hidden} units, after growing to "
                         f"{grown}); it cannot grow further: fit afresh with the larger max_units")
    tree = state.state_dict()
    tree["config"] = dict(tree["config"], max_units=max_units)
    new = TrainState.from_state_dict(tree)
    if new.status == "max_units" and new.network.n_hidden < max_units:
        new.status = "running"
        Engine._enter(new, "candidates", quit=new.config.input_epochs)
    return new


def refit_pending(state: TrainState) -> bool:
    """True for a finished run that asked to be refit (``config.refit``) and has not been: it
    still holds its held-out part (a refit run has none)."""
    return state.done and state.config.refit and state.validation is not None


def refit(state: TrainState, X, Y, backend=None, *, sample_weight=None, validation=None) -> Engine:
    """The network a finished run chose on held-out data, its output layer trained once more on
    *all* of (X, Y) -- the held-out rows included -- before it is used (scikit-learn's "refit
    on the whole training set after choosing"). The units stay as they are (they were trained
    on the training rows only; retraining them would change the size that was chosen).

    The result is an ordinary run: the same run id and history, continuing its epoch count with
    one output phase, then done at its unit limit (``max_units`` = the chosen size). Its state has
    no held-out part any more, so a snapshot of it resumes (bit-exactly) on (X, Y) whole. (X, Y)
    are the data given to :func:`start`; a run that validated on separate data is refit on (X, Y)
    and ``validation`` (its held-out (X, Y[, sample_weight]), as given to :func:`start`) together.
    Refused for a run without held-out data or not finished.
    """
    if state.validation is None:
        raise StateError("refit needs a run that chose its size on held-out data (validation_fraction > 0)")
    if not state.done:
        raise StateError(f"refit needs a finished run; this one is {state.status!r} in its {state.phase.name} phase")
    X, Y = as_training_tensors(X, Y)
    v = state.validation
    if v.index is not None and X.shape[0] != v.n_total:
        raise DataError(f"the run was started on {v.n_total} patterns; got {X.shape[0]}: refit on the same data")
    if v.index is None:
        if validation is None:
            raise DataError("this run validated on separate held-out data: refit needs it (validation=(X, Y))")
        Xv, Yv = as_training_tensors(validation[0], validation[1])
        if Xv.shape[0] != v.n_patterns:
            raise DataError(f"the run validated on {v.n_patterns} patterns; got {Xv.shape[0]}: "
                            "refit with the same data")
        if (sample_weight is None) != (len(validation) < 3 or validation[2] is None):
            raise DataError("give sample weights for both the training and the held-out data, or for neither")
        if sample_weight is not None:
            sample_weight = torch.cat([torch.as_tensor(sample_weight, dtype=torch.float32).reshape(-1),
                                       torch.as_tensor(validation[2], dtype=torch.float32).reshape(-1)])
        X, Y = torch.cat([X, Xv]), torch.cat([Y, Yv])
    w = as_sample_weights(sample_weight, X.shape[0])
    n = state.network.n_hidden
    tree = state.state_dict()
    tree["config"] = dict(tree["config"], validation_fraction=0.0, n_iter_no_change=0, max_units=n)
    tree["validation"] = None
    tree["n_patterns"] = X.shape[0]
    tree["errors"] = torch.zeros(X.shape[0], Y.shape[1])
    tree["diffs"] = torch.zeros(X.shape[0], Y.shape[1])
    tree["data_digest"] = ""  # the digest of all of (X, Y), set by the engine
    tree["status"] = "running"
    fan_in = 1 + state.network.n_inputs + n
    tree["output_slots"] = QuickpropSlots(state.network.n_outputs, fan_in, fan_in).state_dict()  # a fresh phase
    new = TrainState.from_state_dict(tree)
    Engine._enter(new, "output", quit=new.config.output_patience)
    return Engine(new, X, Y, backend, sample_weight=w)


def run(
    engine: Engine,
    *,
    stop_at_epoch: int | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    callbacks: Iterable[Callback] = (),
) -> RunReport:
    """Step until the run is done, ``stop_at_epoch`` is reached, ``max_seconds`` of wall time have
    passed (checked at every epoch boundary: the only budget that is not reproducible), or a
    callback says stop."""
    callbacks = tuple(callbacks)
    hints = [cb.epochs_until_due for cb in callbacks if hasattr(cb, "epochs_until_due")]
    multi_epoch = getattr(engine.backend, "chunk_epochs", None) is not None
    steps = 0
    stopped = False
    t0 = time.perf_counter()
    state = engine.state
    while not state.done:
        if stop_at_epoch is not None and state.counters.epoch >= stop_at_epoch:
            stopped = True
            break
        if max_steps is not None and steps >= max_steps:
            stopped = True
            break
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            stopped = True
            break
        # A distributed candidate phase may run several epochs per step: never past a boundary
        # someone asked for (the stop epoch, a callback's next checkpoint).
        limit = None if stop_at_epoch is None else stop_at_epoch - state.counters.epoch
        if multi_epoch:
            for due in hints:
                hint = due(state)
                if hint:
                    limit = hint if limit is None else min(limit, hint)
        event = engine.step(limit)
        steps += 1
        stop = False
        for cb in callbacks:  # every callback sees every step, even after one asked to stop
            if cb(engine, event):
                stop = True
        if stop:
            stopped = not state.done
            break
    return RunReport(state.done, stopped, steps, time.perf_counter() - t0)
