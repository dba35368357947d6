"""The worker process of the ``processes`` backend: a block runner behind a private socket.

The training process starts it as ``python -m cascor.parallel.procworker FD`` -- not through
multiprocessing, so nothing of the user's script is re-imported here and no ``__main__``
guard is needed. Requests and answers are pickled (they carry NumPy arrays) between the
training process and its own child only; nothing from anywhere else is unpickled.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from .runner import BlockRunner

_METHODS = ("run", "begin", "end")


def serve(conn: Connection) -> None:
    import torch

    torch.set_num_threads(1)
    runner = BlockRunner()
    try:
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):
                return  # the training process closed the socket or went away
            try:
                if method not in _METHODS:
                    raise ValueError(f"unknown request {method!r}")
                answer = ("ok", getattr(runner, method)(*args))
            except Exception as exc:
                answer = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(answer)
            except (BrokenPipeError, OSError):
                return
    finally:
        runner.close()


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
