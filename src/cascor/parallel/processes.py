"""The ``processes`` backend: worker processes on this machine, no cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from .backends import RunnerBackend
from .channel import Channel, RunnerLink


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

    def settings(self) -> dict:
        return {"name": "auto" if not self.forced else self.name, "workers": self.workers, "scheduler": None}


class _WorkerProcess(RunnerLink):
    """One ``cascor.parallel.procworker`` child and the private socket to it."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        # One BLAS/OpenMP thread per worker: the workers are the parallelism.
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        with theirs:
            # Its own session: Ctrl-C in a terminal must reach only the trainer (which finishes
            # the epoch and saves); the worker ends when the trainer closes the socket or dies.
            self.proc = subprocess.Popen([sys.executable, "-m", "cascor.parallel.procworker", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        super().__init__(Channel(ours), f"worker process {self.proc.pid}", self._exited)

    def _exited(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker process {self.proc.pid} exited with code {self.proc.returncode}")

    def close(self) -> None:
        try:
            super().close()  # the worker reads EOF and exits
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
