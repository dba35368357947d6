"""Where candidate blocks are computed: in-process, in local worker processes, or on Dask.

Every backend runs the same pure task (:func:`cascor.parallel.work.advance_block`) on the same
blocks, so the trained network is bit-identical whatever the backend, the worker count or the
order in which tasks finish. A distributed round that fails (worker killed, scheduler gone)
is retried by Dask, then recomputed locally with a warning: same inputs, same result.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter

from ..errors import ConfigError
from .runner import BlockRunner
from .work import advance_blocks, save_shared

BACKENDS = ("local", "processes", "dask", "auto")
# Distribute a round only when its work clearly pays for task overhead (performance.md: engines
# are 3-10x slower than in-process on spirals-sized pools). Work per epoch ~ patterns x pool x fan-in.
AUTO_MIN_WORK = 2e7


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


class _Distributed(LocalBackend):
    # Minimum epochs per task. The engine extends a chunk to every epoch the patience rule cannot
    # stop at (>= input_patience + 1), so nothing is computed past a stop and wasted.
    chunk_epochs = 1
    forced = True

    @property
    def chunks(self) -> Counter:
        """How many chunks ran where: 'runner' (a Dask runner continuing its stream),
        'runner_start' (a stream started), 'tasks', 'local' (in-process fallback). Diagnostics:
        which path a run took costs time, never results."""
        if "_chunks" not in self.__dict__:
            self._chunks = Counter()
        return self._chunks

    def distributes(self, n_patterns, pool_size, fan_in, n_blocks) -> bool:
        if n_blocks < 2:
            return False
        return self.forced or n_patterns * pool_size * fan_in >= AUTO_MIN_WORK

    def begin_round(self, shared: dict):
        return shared

    def end_round(self, handle) -> None:
        pass

    def run_blocks(self, handle, blocks: list[dict], params: dict) -> list[dict]:
        if not self._usable():
            if not getattr(self, "_warned", False):
                self._warned = True
                warnings.warn(f"cascor: the {self.name} backend is unreachable; recomputing candidate rounds "
                              "in-process from now on (results are identical)", RuntimeWarning, stacklevel=2)
            self.chunks["local"] += 1
            return advance_blocks(self._local_shared(handle), blocks, params)
        try:
            return self._run(handle, blocks, params)
        except Exception as exc:  # the engine's answer to any remote failure: recompute here
            warnings.warn(f"cascor: the {self.name} backend failed this round ({type(exc).__name__}: {exc}); "
                          "recomputing it in-process (results are identical)", RuntimeWarning, stacklevel=2)
            self.chunks["local"] += 1
            return advance_blocks(self._local_shared(handle), blocks, params)

    def _usable(self) -> bool:
        return True

    def _local_shared(self, handle):
        return handle

    def _groups(self, blocks: list, workers: int | None = None) -> list[list]:
        """Contiguous groups of blocks, one per worker (the order of results is the block order)."""
        n = max(1, min(workers or self.workers, len(blocks)))
        size = -(-len(blocks) // n)
        return [blocks[i:i + size] for i in range(0, len(blocks), size)]


class ProcessBackend(_Distributed):
    """Blocks split across local worker processes (joblib's loky executor; one machine, no cluster)."""

    name = "processes"

    def __init__(self, workers: int | None = None, forced: bool = True):
        from joblib.externals.loky import get_reusable_executor

        self.workers = workers or os.cpu_count() or 2
        self.forced = forced
        self._executor = get_reusable_executor(max_workers=self.workers, initializer=_one_thread)

    def begin_round(self, shared: dict):
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="cascor-round-")
        return {"dir": tmp, "path": save_shared(shared, tmp.name), "local": shared}

    def end_round(self, handle) -> None:
        handle["dir"].cleanup()

    def _local_shared(self, handle):
        return handle["local"]

    def _run(self, handle, blocks, params):
        futures = [self._executor.submit(advance_blocks, handle["path"], g, params) for g in self._groups(blocks)]
        self.chunks["tasks"] += 1
        return [r for f in futures for r in f.result()]

    def settings(self) -> dict:
        return {"name": "auto" if not self.forced else self.name, "workers": self.workers, "scheduler": None}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


class DaskBackend(_Distributed):
    """Dask distributed: an embedded LocalCluster, or an existing cluster by scheduler address.

    Each round's inputs and residuals go once to every worker, to a :class:`BlockRunner` actor
    per worker that the driver then calls directly for every chunk of the round (no scheduler
    task per chunk). When an actor fails (its worker died), the chunk runs as ordinary Dask
    tasks on inputs scattered (broadcast) once, with Dask's retries; when the cluster is gone,
    in-process with a warning. TLS addresses and ``security`` (a ``distributed.Security``) pass
    through; only the address is ever recorded, never credentials.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, security=None, retries: int = 2,
                 stall_timeout: float = 300.0):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("the dask backend needs Dask distributed: pip install 'cascor[dask]'") from None
        if scheduler and "@" in scheduler:
            raise ConfigError("put credentials in Dask's security settings, not in the scheduler address")
        self.scheduler = scheduler
        self.retries = retries
        self.stall_timeout = stall_timeout  # seconds without any task finishing before giving up on the cluster
        self._cluster = None
        self._runners: list = []  # actor proxies, one per worker; started lazily, dropped on any failure
        self._held: list = []  # per runner: the (values key, columns) of the inputs it holds
        self._rounds = 0
        self._handle = None  # the round in progress
        if scheduler:
            self._client = Client(scheduler, security=security, timeout="30s")
            self.workers = len(self._client.scheduler_info(n_workers=-1)["workers"]) if workers is None else workers
        else:
            import dask

            self.workers = workers or 2
            # The nanny's MALLOC_TRIM_THRESHOLD_=65536 makes allocating torch kernels ~2x slower in
            # workers (performance.md); the embedded cluster keeps the other pre-spawn settings.
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ["MALLOC_TRIM_THRESHOLD_"] = 128 << 20
            # Workers here share the machine's few cores with the training process: no stack
            # sampling profiler (every 10 ms per worker) and a slower event-loop watchdog tick
            # (measured: at most a few % on 2 cores, within noise; kept as it costs nothing).
            quiet = {"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False,
                     "distributed.admin.tick.interval": "500ms"}
            with dask.config.set(quiet):
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
            self._client = Client(self._cluster)

    def _usable(self) -> bool:
        """False once the scheduler is gone: later rounds run in-process without waiting on it."""
        return self._client.status == "running"

    def begin_round(self, shared: dict):
        self._rounds += 1
        handle = {"token": self._rounds, "local": shared, "runners": [], "future": None, "begin": None}
        self._handle = handle
        if self._usable():
            try:
                if not self._runners:
                    self._runners = self._start_runners()
                    self._held = [None] * len(self._runners)
                # The inputs travel with the round's first chunk: one call per runner, not two.
                handle["begin"] = [self._message(shared, held) for held in self._held]
                handle["runners"] = list(self._runners)
            except Exception:
                self._runners = []  # this round runs as tasks; the next one starts new runners
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

    def _start_runners(self) -> list:
        """One runner actor on each of (up to ``workers``) workers alive now."""
        from distributed import wait

        addresses = sorted(self._client.scheduler_info(n_workers=-1)["workers"])[:self.workers]
        futures = [self._client.submit(BlockRunner, actor=True, workers=[a], allow_other_workers=False, pure=False)
                   for a in addresses]
        wait(futures, timeout=60)
        return [f.result() for f in futures]

    def _run(self, handle, blocks, params):
        runners = handle["runners"]
        if runners:
            # Runners compute ahead from where their stream started; blocks are sent only to
            # (re)start it, e.g. after epochs computed elsewhere.
            fresh = handle.get("stream") != params["start"]
            handle["stream"] = None
            begin = handle["begin"] or [None] * len(runners)
            try:
                groups = self._groups(blocks, len(runners))
                calls = [r.run(handle["token"], g if fresh else None, params, m)
                         for r, g, m in zip(runners, groups, begin)]
                results = [res for group in self._collect(calls) for res in group]
                if handle["begin"]:
                    handle["begin"] = None
                    self._held = [tuple(handle["local"]["X_key"])] * len(runners)
                handle["stream"] = params["start"] + params["epochs"]
                self.chunks["runner_start" if fresh else "runner"] += 1
                return results
            except Exception:
                self._end_runners(handle)
                if not self._usable():
                    raise
                handle["runners"] = self._runners = []  # a worker died: tasks from here; new runners next round
        return self._tasks(handle, blocks, params)

    def _end_runners(self, handle, wait: bool = False) -> None:
        """Stop the runners' streams. Nothing waits unless asked: a runner whose worker is gone is gone."""
        if handle["runners"] and self._usable():
            calls = []
            for r in handle["runners"]:
                try:
                    calls.append(r.end(handle["token"]))
                except Exception:
                    pass  # Dask already knows the runner's worker is gone
            if wait:
                try:
                    self._collect(calls, stall_timeout=30)
                except Exception:
                    pass

    def _collect(self, calls: list, stall_timeout: float | None = None) -> list:
        """Results of actor calls, in order; polls so that a lost cluster is noticed, not waited on."""
        results, last_progress = [], time.monotonic()
        for call in calls:
            while True:
                try:
                    results.append(call.result(timeout=1.0))
                    last_progress = time.monotonic()
                    break
                except TimeoutError:
                    self._check_alive(last_progress, stall_timeout)
        return results

    def _check_alive(self, last_progress: float, stall_timeout: float | None = None) -> None:
        if not self._usable():
            raise RuntimeError(f"lost the Dask scheduler (client status {self._client.status!r})")
        limit = self.stall_timeout if stall_timeout is None else stall_timeout
        if time.monotonic() - last_progress > limit:
            raise RuntimeError(f"no Dask task finished for {limit:.0f} s")

    def _tasks(self, handle, blocks, params):
        """The chunk as one Dask task per worker group (Dask's retries), sharing the inputs once."""
        for attempt in range(2):
            if handle["future"] is None:
                handle["future"] = self._share(handle["local"])
            try:
                return self._attempt(handle, blocks, params)
            except Exception:
                if attempt or not self._usable():
                    raise
                handle["future"] = None  # a worker holding the shared inputs died with them: share again

    def _share(self, shared: dict):
        try:
            # One future for the whole round's inputs, copied to every worker once.
            [future] = self._client.scatter([shared], broadcast=True, hash=False, timeout=60)
            return future
        except Exception:
            return None  # the round falls back to a re-share, then to local computation

    def _attempt(self, handle, blocks, params):
        from distributed import wait

        if handle["future"] is None:
            raise RuntimeError("could not share the round's inputs with the cluster")
        futures = [self._client.submit(advance_blocks, handle["future"], g, params, retries=self.retries, pure=False)
                   for g in self._groups(blocks)]
        done, last_progress = 0, time.monotonic()
        while True:
            try:
                wait(futures, timeout=1.0)
                break
            except TimeoutError:
                now_done = sum(f.done() for f in futures)
                if now_done > done:
                    done, last_progress = now_done, time.monotonic()
                self._check_alive(last_progress)
        results = [r for group in self._client.gather(futures) for r in group]
        self.chunks["tasks"] += 1
        return results

    def _local_shared(self, handle):
        return handle["local"]

    def end_round(self, handle) -> None:
        self._end_runners(handle)
        if handle.get("future") is not None:
            try:
                handle["future"].release()
            except Exception:
                pass

    def close(self) -> None:
        if self._handle is not None:
            self._end_runners(self._handle, wait=True)  # streams stop before their workers do
        self._runners = []
        try:
            self._client.close(timeout=10)
        except Exception:
            pass
        finally:
            if self._cluster is not None:
                self._cluster.close()


def make_backend(name: str = "local", workers: int | None = None, scheduler: str | None = None, security=None):
    """A backend by name: local, processes, dask, or auto (local unless a round is big enough)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"the number of workers must be >= 1; got {workers}")
    if name == "local":
        return LocalBackend()
    if name == "processes":
        return ProcessBackend(workers)
    if name == "auto":
        return ProcessBackend(workers, forced=False)
    return DaskBackend(scheduler, workers, security)
