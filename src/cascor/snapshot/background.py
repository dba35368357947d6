"""Checkpoint writes in a helper process, so training never waits on HDF5 or fsync.

Building an HDF5 image costs milliseconds of GIL-holding h5py calls; at one checkpoint per
unit install that alone would slow a 0.1 s two-spirals run by more than half. The training
process only reads its live state and the global RNG states (:func:`cascor.snapshot.codec.take_wire`,
no clones, no conversion) and copies them into one marshalled message on a pipe to a helper
process (``python -m cascor.snapshot.background``) that rebuilds the state tree
(:func:`~cascor.snapshot.codec.raw_from_wire`), encodes it (:func:`~cascor.snapshot.codec.finish`),
builds the HDF5 image, writes it (atomically, fsynced), points ``latest`` at the new file and
prunes. Errors come back and are raised in the training
process at the next checkpoint or at :meth:`flush`.
"""

from __future__ import annotations

import json
import marshal
import os
import select
import subprocess
import sys
import time

from ..errors import SnapshotError
from .codec import WireCursor


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


def encode_job(job: dict) -> bytes:
    """One job as bytes. ``marshal``, not pickle: it rebuilds plain values only (no classes, no
    code runs), it is C-fast, and both ends are the same interpreter (the helper is started
    with ``sys.executable``). Nothing marshalled is ever stored; files are HDF5."""
    return marshal.dumps(job)


def decode_job(data: bytes) -> dict:
    return marshal.loads(data)


class PolledInbox:
    """Length-prefixed messages from a pipe that the helper *polls* instead of waiting on.

    A reader blocked on the pipe is woken by every write; polling leaves a write as a plain
    copy into the pipe buffer, with no scheduler event in the training process.
    """

    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        self._fd = fd
        self._buffer = bytearray()
        self.eof = False

    @property
    def partial(self) -> bool:
        """A message has begun to arrive (the sender is writing the rest now)."""
        return bool(self._buffer)

    def poll(self) -> list[bytes]:
        """Every complete message available now (never waits)."""
        while not self.eof:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
            self._buffer += chunk
        messages, buf = [], self._buffer
        while len(buf) >= 8 and len(buf) >= 8 + (size := int.from_bytes(buf[:8], "little")):
            messages.append(bytes(buf[8 : 8 + size]))
            del buf[: 8 + size]
        return messages


FLUSH = {"flush": True}  # the job that asks the helper to write everything queued now


def serve(jobs: PolledInbox, results, *, interval: float = 0.02, quiet: float = 0.05, max_delay: float = 1.0) -> None:
    """The helper's loop: marshalled jobs in, one JSON result per snapshot out.

    Writes are coalesced: queued snapshots are written once no new one has arrived for
    ``quiet`` seconds, when the oldest has waited ``max_delay`` seconds, on a FLUSH job, or
    at end of input. A burst of checkpoints from a fast run (two-spirals installs a unit every
    few milliseconds) is then written in one go after the burst instead of interleaved with
    it: measured, the helper's work on the other CPU slowed such a run by 3-6% when
    interleaved. The price: a checkpoint reaches the disk up to ``max_delay`` after it was
    taken (a crash of the whole machine in that window loses it; the previous ones are
    intact). ``flush`` in the training process sends FLUSH and waits, so a run's final
    snapshot and every explicit wait are unaffected.
    """
    from .codec import WireMirror, finish, raw_from_wire
    from .manager import Retention, apply_retention, point_latest
    from .writer import write_snapshot

    last_digest = None  # parent of the next snapshot: the helper writes them in order
    mirror = WireMirror()  # units and history rows the sender does not repeat
    queue: list[tuple[float, dict]] = []
    last_arrival, flush = 0.0, False
    while True:
        now = time.monotonic()
        for message in jobs.poll():
            job = decode_job(message)
            if job == FLUSH:
                flush = True
            else:
                queue.append((now, job))
                last_arrival = now
        due = queue and (flush or jobs.eof or now - last_arrival >= quiet or now - queue[0][0] >= max_delay)
        if not due:
            flush = False
            if jobs.eof:
                return
            time.sleep(0.0005 if jobs.partial else interval)
            continue
        for _, job in queue:
            try:
                arrays, attrs = finish(raw_from_wire(job["wire"], mirror))
                if last_digest is not None:
                    attrs["parent_digest"] = last_digest
                digest = write_snapshot(job["path"], arrays, attrs)
                last_digest = digest
                directory = os.path.dirname(job["path"])
                point_latest(directory, os.path.basename(job["path"]))
                apply_retention(directory, Retention(**job["retention"]), job["metrics"], set(job["protect"]))
                result = {"ok": True, "path": job["path"], "digest": digest}
            except Exception as exc:  # reported to the training process
                result = {"ok": False, "path": job["path"], "error": str(exc)}
            try:
                _write_message(results, json.dumps(result).encode())
            except BrokenPipeError:
                pass  # the trainer died: still write every snapshot it handed over
        queue, flush = [], False


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
        # Its own session: Ctrl-C in a terminal (SIGINT to the whole foreground group) must reach
        # only the trainer, which then saves through this helper; the helper ends at EOF.
        self._proc = subprocess.Popen([sys.executable, "-m", "cascor.snapshot.background"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True, bufsize=0, start_new_session=True)
        _widen(self._proc.stdin.fileno())
        self._poll = select.poll()  # registered once: a save only pays one poll(0) call
        self._poll.register(self._proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._pending = 0
        self._errors: list[str] = []
        self.cursor = WireCursor()  # pass to take_wire: what the helper already holds
        self.last_digest: str | None = None  # content digest of the newest snapshot written

    def submit(self, path: str, wire: dict, retention: dict, metrics: dict, protect: set[str]) -> bool:
        """Queue a snapshot for ``path`` of ``wire`` (:func:`cascor.snapshot.codec.take_wire`).

        Its buffers are copied into the message here, so they may be the live state's; all
        encoding beyond that happens in the helper. Returns False, queueing nothing, when the
        state holds a value marshal cannot ship (e.g. a NumPy scalar a user put in
        ``state.targets``): the caller then saves synchronously, where JSON takes it.
        """
        self._drain(block=False)
        self.raise_errors()
        try:
            data = encode_job({"path": path, "wire": wire, "retention": retention, "metrics": metrics,
                               "protect": sorted(protect)})
        except ValueError:
            self.cursor = WireCursor()  # this message never left: the next one starts afresh
            return False
        try:
            _write_message(self._proc.stdin, data)
        except OSError as exc:
            raise SnapshotError(f"the snapshot writer process is gone ({exc})") from None
        self._pending += 1
        return True

    def _ready(self, timeout: float) -> bool:
        return bool(self._poll.poll(timeout * 1000.0))

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
        if self._pending:
            try:
                _write_message(self._proc.stdin, encode_job(FLUSH))
            except OSError:
                pass  # a dead helper is reported by the drain below
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


def _yield_to_training() -> None:
    """Lowest normal priority (nice 19): the helper should not take CPU time from training.

    Not SCHED_IDLE: with every CPU busy (training plus any other job) an idle-class helper
    got almost no CPU time and wrote the run's checkpoints only after the run had ended.
    At nice 19 it still gets a small, steady share, so checkpoints keep reaching the disk.
    """
    try:
        os.nice(19)
    except (AttributeError, OSError):
        pass


if __name__ == "__main__":
    _yield_to_training()
    serve(PolledInbox(sys.stdin.fileno()), sys.stdout.buffer)
