"""Where candidate blocks are computed: in-process, in local worker processes, or on Dask.

Every backend runs the same computation (:mod:`cascor.parallel.work`) on the same blocks, so
the trained network is bit-identical whatever the backend, the worker count or the order in
which workers answer. Worker processes and Dask workers each hold a
:class:`~cascor.parallel.runner.BlockRunner` that keeps a round's inputs and computes the
round ahead of the driver. A failed chunk is retried as Dask tasks (Dask only), then
recomputed in-process with a warning: same inputs, same result.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter

from ..errors import ConfigError
from .runner import BlockRunner
from .work import advance_blocks

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
    """A backend whose workers each hold a runner (one group of contiguous blocks per worker).

    Subclasses say how runners start (:meth:`_start_runners`), how a call reaches them
    (:meth:`_call`) and what happens when they fail (:meth:`_fallback`).
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
                if not self._runners:
                    self._runners = self._start_runners()
                    self._held = [None] * len(self._runners)
                # The inputs travel with the round's first chunk: one call per runner, not two.
                handle["begin"] = [self._message(shared, held) for held in self._held]
                handle["runners"] = list(self._runners)
            except Exception as exc:
                handle["error"] = f"{type(exc).__name__}: {exc}"
                handle["no_workers"] = isinstance(exc, _NoWorkers)
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

    def _drop_runners(self) -> None:
        self._runners, self._held = [], []

    def _usable(self) -> bool:
        return True

    def _check_stall(self, last_progress: float, stall_timeout: float | None = None) -> None:
        limit = self.stall_timeout if stall_timeout is None else stall_timeout
        if time.monotonic() - last_progress > limit:
            raise RuntimeError(f"no worker answered for {limit:.0f} s")

    def _groups(self, blocks: list, workers: int | None = None) -> list[list]:
        """Contiguous groups of blocks, one per worker (the order of results is the block order)."""
        n = max(1, min(workers or self.workers, len(blocks)))
        size = -(-len(blocks) // n)
        return [blocks[i:i + size] for i in range(0, len(blocks), size)]

    def close(self) -> None:
        if self._handle is not None:
            self._end_runners(self._handle, wait=True)  # streams stop before their workers do
        self._drop_runners()


class ProcessBackend(_Distributed):
    """Blocks split across worker processes on this machine (no cluster).

    Each worker is ``python -m cascor.parallel.procworker`` (started for the first round that
    distributes; nothing of the user's script is re-imported in it) holding a runner, like a
    Dask worker. A worker that dies costs the rest of its round (recomputed in-process with a
    warning); the next round starts new workers.
    """

    name = "processes"

    def __init__(self, workers: int | None = None, forced: bool = True):
        self.workers = workers or os.cpu_count() or 2
        self.forced = forced
        self._init_runners()

    def _start_runners(self) -> list:
        started = []
        try:
            for _ in range(self.workers):
                started.append(_WorkerProcess())
        except Exception:
            for w in started:
                w.close()
            raise
        return started

    def _call(self, runners, method: str, args: list, wait: bool = True) -> list:
        for r, a in zip(runners, args):
            r.send(method, a)
        if not wait:
            return []  # each worker's answer is read before its next request
        return [r.receive(30 if method == "end" else self.stall_timeout) for r in runners]

    def _drop_runners(self) -> None:
        for r in self._runners:
            r.close()
        super()._drop_runners()

    def settings(self) -> dict:
        return {"name": "auto" if not self.forced else self.name, "workers": self.workers, "scheduler": None}


class _WorkerProcess:
    """One ``cascor.parallel.procworker`` child and the private socket to it."""

    def __init__(self):
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        # One BLAS/OpenMP thread per worker: the workers are the parallelism.
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        with theirs:
            # Its own session: Ctrl-C in a terminal must reach only the trainer (which finishes
            # the epoch and saves); the worker ends when the trainer closes the socket or dies.
            self.proc = subprocess.Popen([sys.executable, "-m", "cascor.parallel.procworker", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.conn = Connection(ours.detach())
        self._pending = 0  # "end" requests are answered; their answers are read before the next call's

    def send(self, method: str, args: tuple) -> None:
        while self._pending:
            self._read(30)
        try:
            self.conn.send((method, args))
        except OSError as exc:
            raise RuntimeError(f"worker process {self.proc.pid} went away ({exc!r})") from None
        self._pending += 1

    def receive(self, stall_timeout: float):
        return self._read(stall_timeout)

    def _read(self, stall_timeout: float):
        deadline = time.monotonic() + stall_timeout
        while not self.conn.poll(0.5):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker process {self.proc.pid} exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker process {self.proc.pid} did not answer for {stall_timeout:.0f} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"worker process {self.proc.pid} went away ({exc!r})") from None
        self._pending -= 1
        if status != "ok":
            raise RuntimeError(f"worker process {self.proc.pid}: {value}")
        return value

    def close(self) -> None:
        try:
            self.conn.close()  # the worker reads EOF and exits
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


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
        self._init_runners()
        # A cluster without workers (all killed) is given up after this many seconds -- not after
        # stall_timeout, which is for workers that are there but slow.
        self.no_worker_timeout = 30.0
        self._workerless_since = None
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
            # Workers here share the machine's few cores with the training process, so the
            # cluster's housekeeping runs less often: no stack sampling profiler (every 10 ms per
            # worker), memory monitors every 1 s instead of 100 ms (in every worker, and in the
            # nannies, which live in this process), no work stealing (runners are pinned), a
            # slower event-loop watchdog and system monitor. Measured idle: this process 16-18
            # -> 6 ms of CPU per second, each worker ~6.7 -> 2-3 ms/s.
            quiet = {"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False,
                     "distributed.admin.tick.interval": "500ms", "distributed.worker.memory.monitor-interval": "1s",
                     "distributed.scheduler.work-stealing": False, "distributed.admin.system-monitor.interval": "2s"}
            with dask.config.set(quiet), _terminal_interrupts_ignored():
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
            self._client = Client(self._cluster)

    def _usable(self) -> bool:
        """False once the scheduler is gone: later rounds run in-process without waiting on it."""
        return self._client.status == "running"

    def _start_runners(self) -> list:
        """One runner actor on each of (up to ``workers``) workers alive now."""
        from distributed import wait

        addresses = sorted(self._client.scheduler_info(n_workers=-1)["workers"])[:self.workers]
        if not addresses:
            raise _NoWorkers("the Dask cluster has no workers")
        futures = [self._client.submit(BlockRunner, actor=True, workers=[a], allow_other_workers=False, pure=False)
                   for a in addresses]
        wait(futures, timeout=60)
        return [f.result() for f in futures]

    def _call(self, runners, method: str, args: list, wait: bool = True) -> list:
        if method == "run":  # results come back as one pickle from our own runner (see run_pickled)
            calls = [r.run_pickled(pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL)) for r, a in zip(runners, args)]
            return [pickle.loads(b) for b in self._collect(calls)]
        calls = [getattr(r, method)(*a) for r, a in zip(runners, args)]
        return self._collect(calls, 30) if wait else []

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
        """Called while a wait goes on (every second): raise when nothing can finish it."""
        if not self._usable():
            raise RuntimeError(f"lost the Dask scheduler (client status {self._client.status!r})")
        try:
            workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
        except Exception:
            workers = None
        if workers == 0:
            self._workerless_since = self._workerless_since or time.monotonic()
            if time.monotonic() - self._workerless_since > self.no_worker_timeout:
                raise RuntimeError(f"the Dask cluster has had no workers for {self.no_worker_timeout:.0f} s")
        else:
            self._workerless_since = None
        self._check_stall(last_progress, stall_timeout)

    def _fallback(self, handle, blocks, params):
        """The chunk as one Dask task per worker group (Dask's retries), sharing the inputs once.
        If that fails too, the rest of the round runs in-process (one warning)."""
        if handle.get("no_workers"):  # at the round's start: in-process now, try again next round
            raise RuntimeError("the Dask cluster has no workers")
        if handle.get("tasks_failed"):
            raise RuntimeError(handle["tasks_failed"])
        try:
            return self._tasks(handle, blocks, params)
        except Exception as exc:
            handle["tasks_failed"] = f"{type(exc).__name__}: {exc}"
            raise

    def _tasks(self, handle, blocks, params):
        for attempt in range(2):
            if handle["future"] is None:
                self._await_workers()
                handle["future"] = self._share(handle["local"])
            try:
                return self._attempt(handle, blocks, params)
            except Exception:
                if attempt or not self._usable():
                    raise
                handle["future"] = None  # a worker holding the shared inputs died with them: share again

    def _await_workers(self) -> None:
        """Return once the cluster has a worker; raise after ``no_worker_timeout`` without one."""
        deadline = time.monotonic() + self.no_worker_timeout
        while not self._client.scheduler_info(n_workers=-1)["workers"]:
            if not self._usable():
                raise RuntimeError(f"lost the Dask scheduler (client status {self._client.status!r})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Dask cluster has had no workers for {self.no_worker_timeout:.0f} s")
            time.sleep(0.25)

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

    def end_round(self, handle) -> None:
        self._end_runners(handle)
        if handle["future"] is not None:
            try:
                handle["future"].release()
            except Exception:
                pass

    def close(self) -> None:
        super().close()
        try:
            self._client.close(timeout=10)
        except Exception:
            pass
        finally:
            if self._cluster is not None:
                self._cluster.close()


class _NoWorkers(RuntimeError):
    pass


@contextlib.contextmanager
def _terminal_interrupts_ignored():
    """Child processes started inside inherit SIGINT ignored (across exec too): Ctrl-C in a
    terminal signals the whole foreground group, and must reach only the trainer, which then
    finishes its epoch and saves -- not kill the workers that epoch needs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


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
