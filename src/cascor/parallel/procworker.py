"""The worker process of the ``processes`` backend: a block runner behind a private socket.

The training process starts it as ``python -m cascor.parallel.procworker FD`` -- not through
multiprocessing, so nothing of the user's script is re-imported here and no ``__main__``
guard is needed. Requests and answers are pickled (they carry NumPy arrays) between the
training process and its own child only; nothing from anywhere else is unpickled.
"""

from __future__ import annotations

import socket
import sys

from .channel import Channel, serve
from .runner import BlockRunner


def main(fd: int) -> None:
    import torch

    torch.set_num_threads(1)
    serve(Channel(socket.socket(fileno=fd)), BlockRunner())


if __name__ == "__main__":
    main(int(sys.argv[1]))
