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

# The trainer hands over at most this many snapshots that the helper has not yet reported:
# at that point it waits (and asks for an immediate write). So the helper's backlog, and the
# time from taking a checkpoint to its reaching the disk, stay bounded.
MAX_PENDING = 64
# A helper that neither accepts input nor reports a result for this long is stuck (a hung
# filesystem, a stopped process): it is killed and the run falls back to synchronous saves.
STALL_SECONDS = 60.0
MAX_ERROR_CHARS = 1000  # a result stays small, so the helper's answers never fill the pipe


def _superseded(queue: list[dict]) -> set[int]:
    """Indexes of queued jobs that retention would delete as soon as the newer queued ones
    are written: the helper skips writing them (same files on disk afterwards, less work).

    Only periodic checkpoints (``ckpt-<epoch>.h5``) of a batch are candidates, and only under a
    rule that deletes anything (the default, keep all, writes every checkpoint).
    """
    from .manager import CKPT_RE, Retention, SnapshotInfo, list_checkpoints, select_keep

    last = queue[-1]
    rule = Retention(**last["retention"])
    if rule.keep_last <= 0 and rule.keep_best <= 0 and rule.keep_every <= 0:
        return set()
    directory = os.path.dirname(last["path"])
    index = {}
    try:
        infos = list_checkpoints(directory, run_id=last.get("run_id"))
    except OSError:
        return set()
    for k, job in enumerate(queue):
        m = CKPT_RE.match(os.path.basename(job["path"]))
        if m and os.path.dirname(job["path"]) == directory:
            index[job["path"]] = k
            infos.append(SnapshotInfo(job["path"], int(m.group(1)), last["metrics"].get(job["path"], float("nan"))))
    protect = set(last["protect"])
    keep = select_keep(infos, rule, protect)
    return {k for path, k in index.items() if path not in keep}


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
    snapshot and every explicit wait are unaffected. The trainer keeps at most
    :data:`MAX_PENDING` snapshots in flight, so a batch is small.

    ``CASCOR_HELPER_DELAY=<seconds>`` slows every write (tests use it for a slow disk).
    """
    from .codec import WireMirror, finish, raw_from_wire
    from .manager import Retention, apply_retention, point_latest, remember_run
    from .writer import write_snapshot

    delay = float(os.environ.get("CASCOR_HELPER_DELAY") or 0.0)
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
        batch = [job for _, job in queue]
        try:
            skip = _superseded(batch)
        except Exception:  # retention is an optimisation here; writing everything is always right
            skip = set()
        for k, job in enumerate(batch):
            try:
                raw = raw_from_wire(job["wire"], mirror)  # every message, so the mirror stays in step
                if k in skip:
                    result = {"ok": True, "path": job["path"], "digest": None, "skipped": True}
                else:
                    if delay:
                        time.sleep(delay)
                    arrays, attrs = finish(raw)
                    if last_digest is not None:
                        attrs["parent_digest"] = last_digest
                    digest = write_snapshot(job["path"], arrays, attrs)
                    last_digest = digest
                    remember_run(job["path"], job.get("run_id"))
                    directory = os.path.dirname(job["path"])
                    point_latest(directory, os.path.basename(job["path"]))
                    apply_retention(directory, Retention(**job["retention"]), job["metrics"], set(job["protect"]),
                                    run_id=job.get("run_id"))
                    result = {"ok": True, "path": job["path"], "digest": digest}
            except Exception as exc:  # reported to the training process
                result = {"ok": False, "path": job["path"], "error": str(exc)[:MAX_ERROR_CHARS]}
            try:
                _write_message(results, json.dumps(result).encode())
            except BrokenPipeError:
                pass  # the trainer died: still write every snapshot it handed over
        queue, flush = [], False


def _widen(fd: int) -> None:
    """Let one job (typically tens of KB) fit in the pipe, so that sending rarely waits for the helper."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


class WriterLost(SnapshotError):
    """The helper process died or is stuck. The caller saves synchronously from then on."""


class BackgroundWriter:
    """One helper process (``python -m cascor.snapshot.background``) fed through its stdin; it
    chains each snapshot's parent digest to the one it wrote before.

    A plain subprocess rather than multiprocessing: fork would make the training process pay
    copy-on-write faults for the rest of the run, and spawn re-imports the user's main module.
    No threads in the training process either: they would contend for the GIL every epoch.

    Neither side can block the other for good: the trainer writes to a non-blocking pipe and,
    whenever it must wait (the pipe is full, or :data:`MAX_PENDING` snapshots are in flight),
    it reads the helper's answers while it waits, and it gives up on a helper that is dead or
    has made no progress for :data:`STALL_SECONDS` (:class:`WriterLost`). ``inherit_fds`` are
    passed to the helper (the run directory's lock: it stays held while the helper writes).
    """

    def __init__(self, inherit_fds: tuple[int, ...] = ()):
        # Its own session: Ctrl-C in a terminal (SIGINT to the whole foreground group) must reach
        # only the trainer, which then saves through this helper; the helper ends at EOF.
        self._proc = subprocess.Popen([sys.executable, "-m", "cascor.snapshot.background"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, close_fds=True, pass_fds=inherit_fds, bufsize=0,
                                      start_new_session=True)
        self._in = self._proc.stdin.fileno()
        _widen(self._in)
        os.set_blocking(self._in, False)
        self._answers = PolledInbox(self._proc.stdout.fileno())
        self._poll = select.poll()  # registered once: a save only pays one poll(0) call
        self._poll.register(self._proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._pending = 0
        self._errors: list[str] = []
        self.cursor = WireCursor()  # pass to take_wire: what the helper already holds
        self.last_digest: str | None = None  # content digest of the newest snapshot written
        self.last_path: str | None = None  # the newest snapshot the helper reported written
        self.stall_seconds = STALL_SECONDS
        self.max_pending = MAX_PENDING

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def pending(self) -> int:
        """Snapshots handed over whose outcome is not known yet."""
        return self._pending

    def submit(self, path: str, wire: dict, retention: dict, metrics: dict, protect: set[str],
               run_id: str | None = None) -> bool:
        """Queue a snapshot for ``path`` of ``wire`` (:func:`cascor.snapshot.codec.take_wire`).

        Its buffers are copied into the message here, so they may be the live state's; all
        encoding beyond that happens in the helper. Returns False, queueing nothing, when the
        state holds a value marshal cannot ship (e.g. a NumPy scalar a user put in
        ``state.targets``): the caller then saves synchronously, where JSON takes it.
        Raises :class:`WriterLost` when the helper is gone, SnapshotError when a save failed.
        """
        self._collect()
        self.raise_errors()
        if self._pending >= self.max_pending:
            self._wait(self.max_pending // 2)
            self.raise_errors()
        try:
            data = encode_job({"path": path, "wire": wire, "retention": retention, "metrics": metrics,
                               "protect": sorted(protect), "run_id": run_id})
        except ValueError:
            self.cursor = WireCursor()  # this message never left: the next one starts afresh
            return False
        self._send(data)
        self._pending += 1
        return True

    # -- the trainer's side of the pipes: never an unbounded wait ----------------------------
    def _lost(self, why: str) -> WriterLost:
        self.cursor = WireCursor()
        lost, self._pending = self._pending, 0
        if self._proc.poll() is None:
            self._proc.kill()
        return WriterLost(f"the snapshot writer process {why}"
                          + (f"; {lost} checkpoint(s) handed to it may not have been written" if lost else ""))

    def _send(self, data: bytes) -> None:
        view = memoryview(len(data).to_bytes(8, "little") + data)
        waiting = poll = None
        while view:
            try:
                view = view[os.write(self._in, view):]
                waiting = None
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._lost(f"is gone ({exc.strerror or exc})") from None
            # The pipe is full: the helper is busy writing. Take its answers meanwhile, so that
            # it can never be blocked on us while we are blocked on it.
            now = time.monotonic()
            waiting = waiting or now
            if poll is None:
                poll = select.poll()
                poll.register(self._in, select.POLLOUT)
                poll.register(self._proc.stdout.fileno(), select.POLLIN)
            poll.poll(200)
            if self._collect():
                waiting = time.monotonic()
            self._check_alive(waiting)

    def _check_alive(self, since: float) -> None:
        if self._answers.eof or self._proc.poll() is not None:
            raise self._lost("exited unexpectedly")
        if time.monotonic() - since > self.stall_seconds:
            raise self._lost(f"made no progress for {self.stall_seconds:.0f} s (killed)")

    def _collect(self) -> bool:
        """Take every answer available now (never waits); True if there was one."""
        if not self._ready(0.0):
            return False
        messages = self._answers.poll()
        for message in messages:
            result = json.loads(message.decode())
            self._pending = max(0, self._pending - 1)
            if result["ok"]:
                if not result.get("skipped"):
                    self.last_digest, self.last_path = result["digest"], result["path"]
            else:
                self._errors.append(result["error"])
        return bool(messages)

    def _ready(self, timeout: float) -> bool:
        return bool(self._poll.poll(timeout * 1000.0))

    def _wait(self, at_most: int) -> None:
        """Wait until no more than ``at_most`` snapshots are in flight (asking for an immediate write)."""
        if self._pending <= at_most:
            return
        self._send(encode_job(FLUSH))
        since = time.monotonic()
        while self._pending > at_most:
            if self._ready(0.5) and self._collect():
                since = time.monotonic()
                continue
            self._check_alive(since)

    def raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            more = f" (and {len(errors) - 1} more failed save(s))" if len(errors) > 1 else ""
            raise SnapshotError(errors[0] + more)

    def flush(self) -> None:
        """Wait until every submitted snapshot is on disk; raise the first failure."""
        self._collect()
        self._wait(0)
        self.raise_errors()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.terminate()

    def terminate(self) -> None:
        """Close the pipe and reap the helper (killed if it does not end within 10 s)."""
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
