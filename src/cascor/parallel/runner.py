"""A runner of candidate blocks that lives on a worker and computes a round ahead.

Why it exists: with the patience rule, a round reaches the driver in chunks (every epoch the
rule cannot stop at), and as plain Dask tasks every chunk cost a scheduler round trip (~10 ms
on a 2-core LocalCluster, ~4 ms of scheduler CPU on the cores the workers compute on) plus
idle workers while the driver replayed the chunk. A :class:`BlockRunner` sits on each worker
-- a Dask actor, or the object behind a ``processes`` worker -- and answers the driver on a
direct line (:mod:`cascor.parallel.channel`, ~1.3 ms a chunk). It keeps the inputs between calls and
rounds, and keeps computing the round's next epochs while the driver replays -- they are the
same epochs whatever the driver decides, because a round's epochs depend only on where it
started. The driver fetches chunks of them; a round that stops wastes only what was computed
before the end message arrived.

Nothing here is needed for the result: every chunk returns the blocks' full state, so after
any failure the driver continues from its own copy (as Dask tasks, or in-process).
"""

from __future__ import annotations

import threading

import numpy as np

from .work import BlockStepper, block_result, scratch_for

# Step sizes and momentum: constant within a round, so a stream only continues with the same.
_FIXED = ("eps", "eps_out", "mu", "decay")


class _Stream:
    """The epochs of a group of blocks from pass ``params['start']`` on, computed in a thread."""

    def __init__(self, shared: dict, blocks: list[dict], params: dict):
        self.next = int(params["start"])  # the pass the next take() must start at
        self.limit = self.next + int(params["max_epochs"])  # no epoch at or past this pass exists
        self.fixed = {k: params[k] for k in _FIXED}
        self._measure_at = self.next if params["measure_first"] else None
        # Blocks are computed one after another each epoch: one set of work buffers for all.
        scratch = scratch_for(shared, blocks)
        self._steppers = [BlockStepper(shared, b, params, scratch) for b in blocks]
        self._done: dict[int, tuple] = {}  # pass -> (records, states), one per block
        self._error: RuntimeError | None = None
        self._stopped = False
        self._wanted = self.limit  # the pass take() waits for
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._compute, name="cascor-block-stream", daemon=True)
        self._thread.start()

    def _compute(self) -> None:
        p = self.next
        try:
            for p in range(self.next, self.limit):
                with self._cond:
                    if self._stopped:
                        return
                records = [s.epoch(p == self._measure_at) for s in self._steppers]
                states = [s.state() for s in self._steppers]
                with self._cond:
                    self._done[p] = (records, states)
                    if p >= self._wanted:  # waking the waiter every epoch costs ~10% on a busy machine
                        self._cond.notify_all()
        except BaseException as exc:  # reported to the driver by the next take()
            with self._cond:
                self._error = RuntimeError(f"computing pass {p} failed: {exc!r}")
                self._error.__cause__ = exc
                self._cond.notify_all()

    def take(self, params: dict) -> list[dict]:
        """Every block's results for ``params['epochs']`` epochs from ``params['start']``."""
        start, epochs = int(params["start"]), int(params["epochs"])
        if start != self.next or start + epochs > self.limit or any(params[k] != v for k, v in self.fixed.items()):
            raise RuntimeError(f"this runner's stream is at pass {self.next} (limit {self.limit}, {self.fixed}); "
                               f"asked for {epochs} epochs from pass {start} with {params}")
        last = start + epochs - 1
        with self._cond:
            self._wanted = last
            while last not in self._done and self._error is None:
                self._cond.wait()
            if last not in self._done:
                raise self._error
            taken = [self._done.pop(p) for p in range(start, last + 1)]
        self.next = last + 1
        return [block_result(taken[-1][1][i], [t[0][i] for t in taken]) for i in range(len(self._steppers))]

    def stop(self) -> None:
        """Stop after the epoch in progress (a worker that exits mid-epoch aborts in torch)."""
        with self._cond:
            self._stopped = True
        self._thread.join()


class BlockRunner:
    """Candidate blocks on one worker: a round's inputs, and a stream of its epochs."""

    def __init__(self):
        self._token = None
        self._shared = None
        self._stream: _Stream | None = None
        self._X = None
        self._x_key = None  # (values key, columns) of the inputs held in _X

    def begin(self, token: int, message: dict) -> None:
        """Take a round's inputs: ``X`` whole, or only the columns after those held (``X_tail``).

        Residuals come without their transposes (computed here: half the bytes on the wire).
        """
        self._halt()
        message = dict(message)
        key = tuple(message.pop("X_key"))
        if "X" in message:
            self._X = np.array(message.pop("X"), dtype=np.float32, copy=True)
        else:
            tail = message.pop("X_tail", None)
            have = self._x_key
            width = 0 if tail is None else tail.shape[1]
            if have is None or have[0] != key[0] or have[1] + width != key[1]:
                raise RuntimeError(f"this worker holds inputs {have}, which the columns sent do not extend to {key}")
            if width:
                self._X = np.hstack([self._X, tail])
        self._x_key = key
        shared = {"X": self._X, "kind": message["kind"]}
        if message["kind"] == "cascade2":
            R = np.array(message["R"], dtype=np.float32, copy=True)
            shared.update(R=R, RT=np.ascontiguousarray(R.T), rr=message["rr"])
        else:
            Ec = np.array(message["Ec"], dtype=np.float32, copy=True)
            shared.update(Ec=Ec, EcT=np.ascontiguousarray(Ec.T))
        self._shared, self._token = shared, token

    def run(self, token: int, blocks: list[dict] | None, params: dict, message: dict | None = None) -> list[dict]:
        """A chunk's results. ``blocks`` (their state at ``params['start']``) start a new stream;
        None continues the current one where the last chunk ended. ``message`` begins round
        ``token`` first (the round's first chunk carries its inputs)."""
        if message is not None:
            self.begin(token, message)
        if token != self._token:
            raise RuntimeError(f"this worker holds the inputs of round {self._token}, not of round {token}")
        if blocks is not None:
            self._halt()
            self._stream = _Stream(self._shared, blocks, params)
        elif self._stream is None:
            raise RuntimeError("no stream to continue on this worker")
        return self._stream.take(params)

    def end(self, token: int) -> None:
        """The round is over: stop computing ahead, free the residuals (the inputs stay)."""
        if token == self._token:
            self._halt()
            self._token = self._shared = None

    def close(self) -> None:
        """Stop computing ahead (before the process exits: a thread killed mid-epoch aborts torch)."""
        self._halt()

    def _halt(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
