"""Opening a file someone named (a data file, a snapshot) without trusting what it is.

A FIFO would block ``open`` until a writer appears, a device like ``/dev/zero`` never ends, a
directory or a symlink loop fails late: so the file is opened non-blocking, checked to be a
regular file on the open descriptor (no race with a rename), and only then read.
"""

from __future__ import annotations

import os
import stat


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a directory or a socket."""


def open_regular(path: str) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``path``, opened for blocking reads.

    Raises FileNotFoundError, NotRegularFile or another OSError; the caller turns them into
    its own error and closes the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size
