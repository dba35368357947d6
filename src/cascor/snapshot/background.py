"""Checkpoint writes in a helper process, so training never waits on HDF5 or fsync.

Building an HDF5 image costs milliseconds of GIL-holding h5py calls; at one checkpoint per
unit install that alone would slow a 0.1 s two-spirals run by more than half. The training
process therefore only takes the state tree (clones, ~0.3 ms) and hands raw array bytes over
a pipe (no pickle: a length-prefixed JSON header plus the arrays' bytes) to a helper process
(``python -m cascor.snapshot.background``) that builds,
writes (atomically, fsynced), points ``latest`` at the new file and prunes. Errors come back
and are raised in the training process at the next checkpoint or at :meth:`flush`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import numpy as np

from ..errors import SnapshotError


def _read_exact(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_message(stream) -> bytes | None:
    head = _read_exact(stream, 8)
    return None if head is None else _read_exact(stream, int.from_bytes(head, "little"))


def _write_message(stream, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:  # raw pipes may take a write in parts
        written = stream.write(view)
        view = view[written if written is not None else len(view):]
    stream.flush()


def serve(jobs, results) -> None:
    """The helper's loop: one job in (JSON header + array bytes), one JSON result out."""
    from .manager import Retention, apply_retention, point_latest
    from .writer import write_snapshot

    last_digest = None  # parent of the next snapshot: the helper writes them in order
    while True:
        message = _read_message(jobs)
        if message is None:
            return
        size = int.from_bytes(message[:8], "little")
        header = json.loads(message[8 : 8 + size].decode())
        arrays, offset = {}, 8 + size
        for name, dtype, shape, nbytes in header["arrays"]:
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(message, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
            offset += nbytes
        if last_digest is not None:
            header["attrs"]["parent_digest"] = last_digest
        try:
            digest = write_snapshot(header["path"], arrays, header["attrs"])
            last_digest = digest
            directory = os.path.dirname(header["path"])
            point_latest(directory, os.path.basename(header["path"]))
            apply_retention(directory, Retention(**header["retention"]), header["metrics"], set(header["protect"]))
            result = {"ok": True, "path": header["path"], "digest": digest}
        except Exception as exc:  # reported to the training process
            result = {"ok": False, "path": header["path"], "error": str(exc)}
        _write_message(results, json.dumps(result).encode())


def _widen(fd: int) -> None:
    """Let one job (typically tens of KB) fit in the pipe so that sending never waits for the helper."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


class BackgroundWriter:
    """One helper process (it chains each snapshot's parent digest to the one it wrote before) (``python -m cascor.snapshot.background``) fed through its stdin.

    A plain subprocess rather than multiprocessing: fork would make the training process pay
    copy-on-write faults for the rest of the run, and spawn re-imports the user's main module.
    No threads in the training process either: they would contend for the GIL every epoch.
    """

    def __init__(self):
        # Unbuffered: select() on the pipe must see every byte not yet read (no read-ahead).
        self._proc = subprocess.Popen([sys.executable, "-m", "cascor.snapshot.background"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True, bufsize=0)
        _widen(self._proc.stdin.fileno())
        self._pending = 0
        self._errors: list[str] = []
        self.last_digest: str | None = None  # content digest of the newest snapshot written

    def submit(self, path: str, arrays: dict[str, np.ndarray], attrs: dict, retention: dict, metrics: dict,
               protect: set[str]) -> None:
        self._drain(block=False)
        self.raise_errors()
        blobs = [np.ascontiguousarray(a).tobytes() for a in arrays.values()]
        header = json.dumps({
            "path": path,
            "attrs": attrs,
            "arrays": [[n, a.dtype.str, list(a.shape), len(b)] for (n, a), b in zip(arrays.items(), blobs)],
            "retention": retention,
            "metrics": metrics,
            "protect": sorted(protect),
        }).encode()
        try:
            _write_message(self._proc.stdin, b"".join([len(header).to_bytes(8, "little"), header, *blobs]))
        except OSError as exc:
            raise SnapshotError(f"the snapshot writer process is gone ({exc})") from None
        self._pending += 1

    def _ready(self, timeout: float) -> bool:
        return bool(select.select([self._proc.stdout], [], [], timeout)[0])

    def _drain(self, block: bool) -> None:
        while self._pending and (block or self._ready(0.0)):
            if block and not self._ready(1.0):
                if self._proc.poll() is not None:
                    self._errors.append("the snapshot writer process died")
                    self._pending = 0
                continue
            message = _read_message(self._proc.stdout)
            if message is None:
                self._errors.append("the snapshot writer process exited unexpectedly")
                self._pending = 0
                return
            result = json.loads(message.decode())
            self._pending -= 1
            if result["ok"]:
                self.last_digest = result["digest"]
            else:
                self._errors.append(result["error"])

    def raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise SnapshotError("; ".join(errors))

    def flush(self) -> None:
        """Wait until every submitted snapshot is on disk; raise the first failure."""
        self._drain(block=True)
        self.raise_errors()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
