"""The loop around ``Engine.step``: when to stop, whom to tell.

Kept apart from the engine so that stopping rules (epoch budgets, a signal, a snapshot
policy) never leak into the algorithm: the engine only knows how to run one epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from .config import CascorConfig
from .engine import Engine, as_training_tensors
from .state import TrainState, new_state

# A callback sees the engine and the event of the step just run; returning True stops the run
# at this epoch boundary.
Callback = Callable[[Engine, str], Optional[bool]]


@dataclass
class RunReport:
    finished: bool  # the state machine reached 'done'
    stopped_early: bool  # a callback or a budget stopped it at an epoch boundary
    steps: int
    seconds: float  # wall time inside the training loop only


def start(config: CascorConfig, X, Y, backend=None) -> Engine:
    """A fresh run on (X, Y); ``backend`` computes candidate pools (default: in-process)."""
    X, Y = as_training_tensors(X, Y)
    state = new_state(config, X.shape[1], Y.shape[1], X.shape[0])
    return Engine(state, X, Y, backend)


def resume(state: TrainState, X, Y, backend=None) -> Engine:
    """Continue a run from its state tree; nothing is re-initialised."""
    return Engine(state, X, Y, backend)


def run(
    engine: Engine,
    *,
    stop_at_epoch: int | None = None,
    max_steps: int | None = None,
    callbacks: Iterable[Callback] = (),
) -> RunReport:
    """Step until the run is done, ``stop_at_epoch`` is reached, or a callback says stop."""
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
