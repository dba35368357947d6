"""The ``dask`` backend: an embedded Dask LocalCluster, or an existing cluster by address."""

from __future__ import annotations

import contextlib
import pickle
import secrets
import signal
import socket
import ssl
import threading
import time
import warnings

from ..errors import ConfigError
from .backends import NoWorkers, RunnerBackend
from .channel import Channel, RunnerLink, check_token, serve
from .runner import BlockRunner
from .work import advance_blocks


class DaskBackend(RunnerBackend):
    """Dask distributed: an embedded LocalCluster, or an existing cluster by scheduler address.

    A :class:`BlockRunner` actor per worker gets a round's residuals once with its first chunk
    and keeps the inputs between rounds (only a new unit's column travels). The driver reaches
    it for every chunk on a direct line (:mod:`cascor.parallel.channel`; no scheduler task, no
    actor call), or by actor calls when no line opens (``direct_lines=False``, or a firewall).
    When a runner fails (its worker died), the rest of the round runs as ordinary Dask tasks on
    inputs scattered (broadcast) once, with Dask's retries, and the next round starts new
    actors; when the cluster is gone or has no workers, in-process with a warning. TLS
    addresses and ``security`` (a ``distributed.Security``) pass through, to the lines too;
    only the address is ever recorded, never credentials.
    """

    name = "dask"
    runner_class = None  # the actor class; DaskBlockRunner unless a subclass says otherwise

    def __init__(self, scheduler: str | None = None, workers: int | None = None, security=None, retries: int = 2,
                 stall_timeout: float = 300.0, direct_lines: bool = True):
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
        self.direct_lines = direct_lines  # False: every chunk by actor call (see _line)
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
            with dask.config.set(quiet), terminal_interrupts_ignored():
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
            self._client = Client(self._cluster)

    def _usable(self) -> bool:
        """False once the scheduler is gone: later rounds run in-process without waiting on it."""
        return self._client.status == "running"

    def _start_runners(self) -> list:
        """One runner actor on each of (up to ``workers``) workers alive now, each with a direct
        line when the driver can reach it (actor calls otherwise)."""
        from distributed import wait

        addresses = sorted(self._client.scheduler_info(n_workers=-1)["workers"])[:self.workers]
        if not addresses:
            raise NoWorkers("the Dask cluster has no workers")
        runner = self.runner_class or DaskBlockRunner
        futures = [self._client.submit(runner, actor=True, workers=[a], allow_other_workers=False, pure=False)
                   for a in addresses]
        wait(futures, timeout=60)
        actors = [f.result() for f in futures]
        return [self._line(actor, address) or _ActorLink(actor, self) for actor, address in zip(actors, addresses)]

    def _more_workers_now(self) -> bool:
        if len(self._runners) >= self.workers:
            return False  # the usual case: no scheduler call
        return len(self._client.scheduler_info(n_workers=-1)["workers"]) > len(self._runners)

    def _line(self, actor, address: str):
        """A direct line to ``actor`` (see :mod:`cascor.parallel.channel`), or None when its
        worker cannot be reached on another port (a firewall): then chunks go by actor calls."""
        if not self.direct_lines:
            return None
        token = secrets.token_bytes(32)
        sock = None
        try:
            host, port = actor.listen(token).result(timeout=30)
            sock = socket.create_connection((host, port), timeout=10)
            ctx = self._client.security.get_connection_args("client").get("ssl_context")
            if ctx is not None:  # a TLS cluster: the line uses the cluster's certificates too
                sock = ctx.wrap_socket(sock, server_hostname=host if ctx.check_hostname else None)
            sock.settimeout(None)
            channel = Channel(sock)
            channel.send_bytes(token)
        except Exception as exc:
            if sock is not None:
                sock.close()
            # Not tried again (a firewall that drops packets would cost 10 s per worker each time).
            self.direct_lines = False
            warnings.warn(f"cascor: no direct line to Dask worker {address} ({type(exc).__name__}: {exc}); "
                          "using actor calls from now on (slower per chunk, same results)", RuntimeWarning,
                          stacklevel=2)
            return None
        link = RunnerLink(channel, f"Dask worker {address}", lambda: self._worker_present(address))
        link.actor = actor  # while the line is up, Dask keeps the actor (and counts it on its worker)
        return link

    def _worker_present(self, address: str) -> None:
        self._require_scheduler()
        try:
            present = address in self._client.scheduler_info(n_workers=-1)["workers"]
        except Exception:
            present = True  # cannot tell: the line itself (EOF) or the stall timeout decides
        if not present:
            raise RuntimeError(f"Dask worker {address} left the cluster")

    def _result(self, call, stall_timeout: float | None = None):
        """An actor call's result; polls so that a lost cluster is noticed, not waited on."""
        started = time.monotonic()
        while True:
            try:
                return call.result(timeout=1.0)
            except TimeoutError:
                self._check_alive(started, stall_timeout)

    def _require_scheduler(self) -> None:
        if not self._usable():
            raise RuntimeError(f"lost the Dask scheduler (client status {self._client.status!r})")

    def _check_alive(self, last_progress: float, stall_timeout: float | None = None) -> None:
        """Called while a wait goes on (every second): raise when nothing can finish it."""
        self._require_scheduler()
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
        limit = self.stall_timeout if stall_timeout is None else stall_timeout
        if time.monotonic() - last_progress > limit:
            raise RuntimeError(f"no worker answered for {limit:.0f} s")

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
            self._require_scheduler()
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
        if self._cluster is not None:
            self._close_workers()
        try:
            self._client.close(timeout=10)
        except Exception:
            pass
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def _close_workers(self, timeout: float = 10.0) -> None:
        """The embedded cluster's workers first, while its scheduler still answers them: closing
        the scheduler under live workers makes a worker now and then print a heartbeat traceback
        on the user's terminal (seen once in about ten Ctrl-C'd CLI runs)."""
        try:
            self._cluster.scale(0)
            deadline = time.monotonic() + timeout
            while self._cluster.workers and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:
            pass  # the cluster's own close still runs


@contextlib.contextmanager
def terminal_interrupts_ignored():
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


class DaskBlockRunner(BlockRunner):
    """The runner actor: also answers on a direct line (:mod:`cascor.parallel.channel`) from
    the driver, so that a chunk costs a socket round trip instead of a Dask actor call."""

    def __init__(self):
        super().__init__()
        from distributed import get_worker

        worker = get_worker()  # an actor is built inside a task on its worker
        self._address = worker.address
        self._ssl = worker.security.get_listen_args("worker").get("ssl_context")

    def run_pickled(self, request: bytes) -> bytes:
        """:meth:`run` by actor call, its arguments and results as one pickle each: Dask then
        moves one frame instead of one per array (measured: 5.7-6.0 -> 4.2-4.8 ms per chunk
        boundary on a busy 2-core machine). No new trust: whoever can call a Dask actor can
        already run any code on the cluster (Dask unpickles what clients send)."""
        return pickle.dumps(self.run(*pickle.loads(request)), protocol=pickle.HIGHEST_PROTOCOL)

    def listen(self, token: bytes) -> tuple[str, int]:
        """Accept one connection on the worker's host (TLS if the cluster uses it) that presents
        ``token``, and serve it from a thread. Returns the (host, port) to connect to."""
        from distributed.comm import get_address_host

        host = get_address_host(self._address)
        family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
        server = socket.create_server((host, 0), family=family)
        server.settimeout(60)
        threading.Thread(target=self._accept, args=(server, token), name="cascor-runner-line", daemon=True).start()
        return host, server.getsockname()[1]

    def _accept(self, server: socket.socket, token: bytes, window: float = 60.0, auth_seconds: float = 10.0) -> None:
        """Serve the first connection that presents ``token`` within ``window`` seconds. Any other
        connection (a port scanner, a stranger who connected first) is dropped after at most
        ``auth_seconds`` (TLS handshake, then the token read), and the line keeps waiting for
        the driver."""
        deadline = time.monotonic() + window
        with server:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # the driver uses actor calls then
                server.settimeout(remaining)
                try:
                    sock, _ = server.accept()
                except OSError:
                    return
                try:
                    sock.settimeout(auth_seconds)
                    if self._ssl is not None:
                        sock = self._ssl.wrap_socket(sock, server_side=True)
                    channel = Channel(sock)
                    if check_token(channel, token, auth_seconds):
                        sock.settimeout(None)
                        break
                except (OSError, ssl.SSLError):
                    pass
                sock.close()
        serve(channel, self)


class _ActorLink:
    """A runner reached through Dask actor calls (when no direct line could be opened)."""

    def __init__(self, actor, backend: DaskBackend):
        self.actor, self._backend, self._pending = actor, backend, None

    def send(self, method: str, args: tuple) -> None:
        # An unread answer (a fire-and-forget "end") is dropped: actor calls are independent.
        if method == "run":  # arguments and answer as one pickle each (see BlockRunner.run_pickled)
            self._pending = (method, self.actor.run_pickled(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)))
        else:
            self._pending = (method, getattr(self.actor, method)(*args))

    def receive(self, stall_timeout: float):
        method, call = self._pending
        self._pending = None
        value = self._backend._result(call, stall_timeout)
        return pickle.loads(value) if method == "run" else value

    def close(self) -> None:
        pass
