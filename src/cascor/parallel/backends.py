"""Where candidate blocks are computed: in-process, in local worker processes, or on Dask.

Every backend runs the same computation (:mod:`cascor.parallel.work`) on the same blocks, so
the trained network is bit-identical whatever the backend, the worker count or the order in
which workers answer. Worker processes (:mod:`cascor.parallel.processes`) and Dask workers
(:mod:`cascor.parallel.dask_cluster`) each hold a :class:`~cascor.parallel.runner.BlockRunner`
that keeps a round's inputs and computes the round ahead of the driver. A failed chunk is
retried as Dask tasks (Dask only), then recomputed in-process with a warning: same inputs,
same result.
"""

from __future__ import annotations

import warnings
from collections import Counter

from ..errors import ConfigError
from .work import advance_blocks

BACKENDS = ("local", "processes", "dask", "auto")
# Distribute a round only when its work clearly pays (performance.md: engines are 3-10x slower
# than in-process on spirals-sized pools). Work per epoch ~ patterns x pool x fan-in. Measured with
# 2 workers (docs/results.md): break-even near 2e6, 1.3x at 5e6, 1.5x from 1e7 -- but starting
# the workers costs ~0.7 s once, which rounds below ~2e7 (< ~50 ms saved each) rarely earn back.
AUTO_MIN_WORK = 2e7


class NoWorkers(RuntimeError):
    """A cluster without any worker at the start of a round."""


class LocalBackend:
    """Everything in the training process, one epoch per step (the default)."""

    name = "local"
    workers = None
    scheduler = None

    def distributes(self, n_patterns: int, pool_size: int, fan_in: int, n_blocks: int) -> bool:
        return False

    def settings(self) -> dict:
        return {"name": self.name, "workers": self.workers, "scheduler": self.scheduler}

    def close(self) -> None:
        pass


class RunnerBackend(LocalBackend):
    """A backend whose workers each hold a runner (one group of contiguous blocks per worker).

    Subclasses say how runners start (:meth:`_start_runners`: objects with ``send(method,
    args)``, ``receive(stall_timeout)`` and ``close()``, like
    :class:`~cascor.parallel.channel.RunnerLink`) and what happens when they fail
    (:meth:`_fallback`).
    """

    # Minimum epochs per chunk. The engine extends a chunk to every epoch the patience rule cannot
    # stop at (>= input_patience + 1); runners compute further ahead on their own.
    chunk_epochs = 1
    forced = True
    stall_timeout = 300.0  # seconds without an answer before giving up on a worker

    def _init_runners(self) -> None:
        self._runners: list = []  # one per worker; started lazily, dropped on any failure
        self._held: list = []  # per runner: the (values key, columns) of the inputs it holds
        self._rounds = 0
        self._handle = None  # the round in progress
        self.chunks = Counter()
        """How many chunks ran where: 'runner' (a runner continuing its stream), 'runner_start'
        (a stream started), 'tasks' (Dask tasks), 'local' (in-process fallback). Diagnostics:
        the path a run took costs time, never results."""

    def distributes(self, n_patterns, pool_size, fan_in, n_blocks) -> bool:
        if n_blocks < 2:
            return False
        return self.forced or n_patterns * pool_size * fan_in >= AUTO_MIN_WORK

    def begin_round(self, shared: dict):
        self._rounds += 1
        handle = {"token": self._rounds, "local": shared, "runners": [], "begin": None, "stream": None,
                  "future": None, "error": None}
        self._handle = handle
        if self._usable():
            try:
                if self._runners and self._more_workers_now():
                    self._drop_runners()  # e.g. a restarted worker is back: use it again
                if not self._runners:
                    self._runners = self._start_runners()
                    self._held = [None] * len(self._runners)
                # The inputs travel with the round's first chunk: one call per runner, not two.
                handle["begin"] = [self._message(shared, held) for held in self._held]
                handle["runners"] = list(self._runners)
            except Exception as exc:
                handle["error"] = f"{type(exc).__name__}: {exc}"
                handle["no_workers"] = isinstance(exc, NoWorkers)
                self._drop_runners()  # this round runs without them; the next one starts new ones
        return handle

    @staticmethod
    def _message(shared: dict, held) -> dict:
        """What a runner holding inputs ``held`` needs for this round: the residuals (not their
        transposes) and, of the inputs, only the columns added since (one per installed unit)."""
        key = tuple(shared["X_key"])
        msg = {k: shared[k] for k in ("kind", "Ec", "R", "rr") if k in shared}
        msg["X_key"] = key
        if held is None or held[0] != key[0] or held[1] > key[1]:
            msg["X"] = shared["X"]
        elif held[1] < key[1]:
            msg["X_tail"] = shared["X"][:, held[1]:]
        return msg

    def run_blocks(self, handle, blocks: list[dict], params: dict) -> list[dict]:
        if not self._usable():
            if not getattr(self, "_warned", False):
                self._warned = True
                warnings.warn(f"cascor: the {self.name} backend is unreachable; recomputing candidate rounds "
                              "in-process from now on (results are identical)", RuntimeWarning, stacklevel=2)
            return self._in_process(handle, blocks, params)
        try:
            if handle["runners"]:
                try:
                    return self._runner_chunk(handle, blocks, params)
                except Exception as exc:
                    handle["error"] = f"{type(exc).__name__}: {exc}"
                    self._end_runners(handle)
                    handle["runners"] = []
                    self._drop_runners()
                    if not self._usable():
                        raise
            return self._fallback(handle, blocks, params)
        except Exception as exc:  # the engine's answer to any remote failure: recompute here
            warnings.warn(f"cascor: the {self.name} backend failed this round ({type(exc).__name__}: {exc}); "
                          "recomputing it in-process (results are identical)", RuntimeWarning, stacklevel=2)
            return self._in_process(handle, blocks, params)

    def _runner_chunk(self, handle, blocks, params) -> list[dict]:
        runners = handle["runners"]
        # Runners compute ahead from where their stream started; blocks are sent only to
        # (re)start it, e.g. after epochs computed elsewhere.
        fresh = handle["stream"] != params["start"]
        handle["stream"] = None
        begin = handle["begin"] or [None] * len(runners)
        groups = self._groups(blocks, len(runners))
        calls = [(handle["token"], g if fresh else None, params, m) for g, m in zip(groups, begin)]
        results = [res for group in self._call(runners[:len(calls)], "run", calls) for res in group]
        if handle["begin"]:
            handle["begin"] = None
            self._held[:len(calls)] = [tuple(handle["local"]["X_key"])] * len(calls)
        handle["stream"] = params["start"] + params["epochs"]
        self.chunks["runner_start" if fresh else "runner"] += 1
        return results

    def _in_process(self, handle, blocks, params) -> list[dict]:
        self.chunks["local"] += 1
        return advance_blocks(handle["local"], blocks, params)

    def _fallback(self, handle, blocks, params) -> list[dict]:
        """A chunk without runners (they failed this round): in-process with a warning, unless
        the backend has another way (Dask: tasks)."""
        raise RuntimeError(handle["error"] or "its workers did not start")

    def end_round(self, handle) -> None:
        self._end_runners(handle)

    def _end_runners(self, handle, wait: bool = False) -> None:
        """Stop the runners' streams and free their residuals; the inputs stay for the next round."""
        if handle["runners"] and self._usable():
            try:
                self._call(handle["runners"], "end", [(handle["token"],)] * len(handle["runners"]), wait=wait)
            except Exception:
                pass  # a runner whose worker is gone is gone

    def _call(self, runners, method: str, args: list, wait: bool = True) -> list:
        """One request to each runner, all sent before any answer is awaited."""
        for r, a in zip(runners, args):
            r.send(method, a)
        if not wait:
            return []  # each runner's answer is read (or dropped) before its next request
        return [r.receive(30 if method == "end" else self.stall_timeout) for r in runners]

    def _more_workers_now(self) -> bool:
        """True when runners were started on fewer workers than there are now."""
        return False

    def _drop_runners(self) -> None:
        for r in self._runners:
            r.close()
        self._runners, self._held = [], []

    def _usable(self) -> bool:
        return True

    def _groups(self, blocks: list, workers: int | None = None) -> list[list]:
        """Contiguous groups of blocks, one per worker (the order of results is the block order)."""
        n = max(1, min(workers or self.workers, len(blocks)))
        size = -(-len(blocks) // n)
        return [blocks[i:i + size] for i in range(0, len(blocks), size)]

    def close(self) -> None:
        if self._handle is not None:
            self._end_runners(self._handle, wait=True)  # streams stop before their workers do
        self._drop_runners()


def make_backend(name: str = "local", workers: int | None = None, scheduler: str | None = None, security=None):
    """A backend by name: local, processes, dask, or auto (local unless a round is big enough)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"the number of workers must be >= 1; got {workers}")
    from .dask_cluster import DaskBackend
    from .processes import ProcessBackend

    if name == "local":
        return LocalBackend()
    if name == "processes":
        return ProcessBackend(workers)
    if name == "auto":
        return ProcessBackend(workers, forced=False)
    return DaskBackend(scheduler, workers, security)
