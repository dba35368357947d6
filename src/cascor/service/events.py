"""The worker's side of the live stream: a trainer callback that writes the run's history, as it
grows, to a pipe the service reads (``cascor train ... --events-fd N``).

It is a :class:`~cascor.tracking.HistoryLogger`, so it passes on exactly what the history holds,
in batches (every unit install and phase end, and at most ``flush_seconds`` apart): a run doing
thousands of epochs a second writes a few messages a second, not one per epoch. The first
message carries the whole history so far (a resumed run's earlier part included), so the
service's view of a run is always the history the snapshot will hold.

One JSON document per line, NaN written as null (browsers' JSON has no NaN). Nothing here
touches the run's random state: a run is bit-identical with or without a stream. If the service
goes away (the pipe breaks), the run stops at the next epoch boundary and saves a snapshot --
it was started for the service, and an orphan nobody watches should not train on unseen.
"""

from __future__ import annotations

import json
import math
import os
import time

from ..tracking import HistoryLogger


def json_safe(value):
    """``value`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # a NumPy scalar
        return json_safe(value.item())
    return value


def encode(message: dict) -> bytes:
    return (json.dumps(json_safe(message), separators=(",", ":"), allow_nan=False) + "\n").encode()


def _status(state) -> dict:
    c = state.counters
    return {"status": state.status, "epoch": c.epoch, "phase": state.phase.name, "hidden_units": state.network.n_hidden,
            "best_n_units": state.best_n_units}


class EventLogger(HistoryLogger):
    """History batches as JSON lines on file descriptor ``fd`` (the write end of a pipe)."""

    def __init__(self, fd: int, flush_seconds: float = 0.25):
        super().__init__(flush_seconds)
        self.fd = fd
        self.broken = False
        self._first = True

    def __call__(self, engine, event):
        super().__call__(engine, event)
        return self.broken  # the service is gone: stop at this epoch boundary (a snapshot follows)

    def open(self, state):
        self._first = True
        self._send({"type": "open", "run_id": state.run_id, "n_inputs": state.network.n_inputs,
                    "n_outputs": state.network.n_outputs, **_status(state)})
        return -1  # the first batch is the whole history: the service replaces what it held

    def write(self, state, epochs, units, scores, seconds):
        # "t": the wall clock when the batch left the worker (the load benchmark's latency)
        self._send({"type": "rows", "reset": self._first, "t": time.time(), "epochs": epochs, "units": units,
                    "scores": scores, "seconds": round(seconds, 3), **_status(state)})
        self._first = False

    def close(self, status="FINISHED"):
        state = self._state
        self._send({"type": "end", "result": status, **(_status(state) if state is not None else {})})

    def _send(self, message: dict) -> None:
        if self.broken:
            return
        data = encode(message)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:  # EPIPE: the service stopped reading
            self.broken = True
