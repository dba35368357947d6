"""The ``processes`` backend: worker processes on this machine, no cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from .backends import RunnerBackend


class ProcessBackend(RunnerBackend):
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
