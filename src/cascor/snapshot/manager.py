"""Checkpoint policy, naming and retention for a run directory.

Three separate small pieces (as Orbax separates them):
* naming: ``DIR/ckpt-<epoch>.h5``, ``DIR/final.h5``, and ``DIR/latest.h5``, a relative
  symlink to the newest complete snapshot, replaced atomically (a copy where symlinks fail);
* policy: when to save (every N epochs, at each unit install, at phase ends, on request);
* retention: :func:`select_keep`, a pure function over snapshot infos.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass

from ..errors import SnapshotError
from .codec import finish, take, take_wire
from .writer import _fsync_dir, atomic_copy, write_snapshot

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.h5$")


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    epoch: int
    metric: float = float("nan")  # lower is better (the run's sum of squared errors)


@dataclass(frozen=True)
class Retention:
    keep_last: int = 0  # 0: keep all
    keep_best: int = 0
    keep_every: int = 0  # keep every snapshot whose epoch is a multiple of this


def select_keep(infos: list[SnapshotInfo], rule: Retention, protect: set[str] = frozenset()) -> set[str]:
    """Paths to keep. The newest snapshot and ``protect`` (e.g. the one a run resumed from) always stay."""
    if not infos:
        return set()
    by_epoch = sorted(infos, key=lambda i: (i.epoch, i.path))
    if rule.keep_last <= 0 and rule.keep_best <= 0 and rule.keep_every <= 0:
        return {i.path for i in infos}
    keep = {by_epoch[-1].path} | (set(protect) & {i.path for i in infos})
    if rule.keep_last > 0:
        keep |= {i.path for i in by_epoch[-rule.keep_last:]}
    if rule.keep_best > 0:
        scored = [i for i in infos if i.metric == i.metric]
        keep |= {i.path for i in sorted(scored, key=lambda i: (i.metric, -i.epoch))[: rule.keep_best]}
    if rule.keep_every > 0:
        keep |= {i.path for i in infos if i.epoch % rule.keep_every == 0}
    return keep


def list_checkpoints(directory: str, run_id: str | None = None) -> list[SnapshotInfo]:
    """The ``ckpt-*.h5`` files of ``directory`` (only run ``run_id``'s, when given), oldest first."""
    out = []
    for name in os.listdir(directory):
        m = CKPT_RE.match(name)
        if m:
            path = os.path.join(directory, name)
            if run_id is None or run_of(path) == run_id:
                out.append(SnapshotInfo(path, int(m.group(1))))
    return sorted(out, key=lambda i: i.epoch)


_RUN_OF: dict[tuple, str | None] = {}  # (path, inode, mtime, size) -> run_id (None: does not verify)


def run_of(path: str) -> str | None:
    """The run a snapshot file belongs to (None if it does not verify); cached per file version."""
    from . import inspect as inspect_snapshot

    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
    if key not in _RUN_OF:
        try:
            _RUN_OF[key] = inspect_snapshot(path)["run_id"]
        except SnapshotError:
            _RUN_OF[key] = None
    return _RUN_OF[key]


def remember_run(path: str, run_id: str) -> None:
    """Record that this process wrote ``path`` for ``run_id`` (no need to read it back)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    _RUN_OF[(path, st.st_ino, st.st_mtime_ns, st.st_size)] = run_id


def point_latest(directory: str, target_name: str) -> None:
    """Make DIR/latest.h5 name ``target_name`` atomically (symlink swap; copy as a fallback)."""
    link = os.path.join(directory, "latest.h5")
    tmp = os.path.join(directory, f".latest.h5.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.symlink(target_name, tmp)
        os.replace(tmp, link)
        _fsync_dir(directory)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        atomic_copy(os.path.join(directory, target_name), link)


def apply_retention(directory: str, rule: Retention, metrics: dict[str, float], protect: set[str],
                    run_id: str | None = None) -> list[str]:
    """Delete the checkpoints of ``directory`` (run ``run_id``'s only, when given) that ``rule``
    does not keep; never the one ``latest`` names. Paths compare by their real path, and a
    file someone else removed first is no error."""
    if rule.keep_last <= 0 and rule.keep_best <= 0 and rule.keep_every <= 0:
        return []  # keep all: no need to list a directory that may hold thousands of files
    directory = os.path.realpath(directory)
    link = os.path.join(directory, "latest.h5")
    protect = {os.path.realpath(p) for p in protect}
    if os.path.islink(link):
        protect.add(os.path.realpath(link))
    infos = [SnapshotInfo(i.path, i.epoch, metrics.get(i.path, float("nan")))
             for i in list_checkpoints(directory, run_id)]
    keep = select_keep(infos, rule, protect)
    removed = []
    for info in infos:
        if info.path not in keep:
            try:
                os.remove(info.path)
                removed.append(info.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SnapshotError(f"cannot prune {info.path}: {exc.strerror}") from exc
    return removed


class CheckpointManager:
    """A trainer callback that saves by policy, prunes by retention and keeps ``latest`` current.

    With ``background=True`` checkpoints are written by a helper process (see
    :mod:`cascor.snapshot.background`); call :meth:`close` (or save a named final snapshot,
    which waits for them) before relying on the files. If the helper dies or gets stuck, the
    manager warns once and saves synchronously from then on.

    A save that fails (a full disk, a read-only directory) raises :class:`CheckpointError`
    naming the directory, the cause and the last good snapshot: the run stops there rather
    than train on without checkpoints. ``lock`` (a :class:`~cascor.snapshot.rundir.RunLock`)
    is handed to the helper, so the directory stays locked until its last write.
    """

    def __init__(self, directory: str, *, every: int = 0, at_install: bool = True, at_phase_end: bool = False,
                 retention: Retention = Retention(), protect: set[str] = frozenset(), backend: dict | None = None,
                 data_source: dict | None = None, counter: int = 0, parent_digest: str = "",
                 background: bool = False, lock=None):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise SnapshotError(f"cannot create run directory {directory}: {exc.strerror or exc}") from None
        self.directory = directory
        self._abs_directory = os.path.realpath(directory)
        self.every = every
        self.at_install = at_install
        self.at_phase_end = at_phase_end
        self.retention = retention
        self.protect = {os.path.realpath(p) for p in protect}
        self.backend = backend
        self.data_source = data_source
        self.counter = counter
        self.parent_digest = parent_digest
        self.metrics: dict[str, float] = {}
        self.seconds = 0.0  # time spent saving, so callers can report pure training time
        self.saved: list[str] = []
        self.last_good: str | None = None  # the newest snapshot known to be on disk
        self._last_phase: str | None = None
        self._background = background
        self._lock = lock
        self._writer = None  # started on the first background save

    def __call__(self, engine, event: str) -> None:
        if event in ("output", "candidates") and not self.every and not self.at_phase_end:
            return  # the common case, once per epoch: nothing can be due
        state = engine.state
        phase = state.phase.name
        due = (
            (self.every > 0 and state.counters.epoch % self.every == 0 and event in ("output", "candidates"))
            or (self.at_install and event == "installed")
            or (self.at_phase_end and self._last_phase is not None and phase != self._last_phase)
        )
        self._last_phase = phase
        if due and not state.done:
            self.save(state)

    def start(self) -> "CheckpointManager":
        """Start the background writer now, so its start-up overlaps the caller's own set-up."""
        if self._background and self._writer is None:
            from .background import BackgroundWriter

            fds = (self._lock.fd,) if self._lock is not None and self._lock.fd >= 0 else ()
            self._writer = BackgroundWriter(inherit_fds=fds)
        return self

    def epochs_until_due(self, state) -> int | None:
        """How far a multi-epoch step may go before this manager wants an epoch-boundary save."""
        if self.every > 0:
            return self.every - state.counters.epoch % self.every
        return None

    def save(self, state, name: str | None = None, wait: bool = False) -> str:
        """Save now. With ``wait`` (or without a background writer) the file is on disk when this
        returns, after every pending background write."""
        try:
            return self._save(state, name, wait)
        except SnapshotError as exc:
            raise CheckpointError(f"{exc}; training stopped at epoch {state.counters.epoch}; "
                                  + (f"the last good snapshot is {self._newest_good()}" if self._newest_good()
                                     else "no snapshot of this run reached the disk")) from None

    def _newest_good(self) -> str | None:
        """A synchronous save resets the writer's ``last_path``, so whichever is set is newer."""
        if self._writer is not None and self._writer.last_path is not None:
            return self._writer.last_path
        return self.last_good

    def _save(self, state, name: str | None, wait: bool) -> str:
        from .background import WriterLost

        t0 = time.perf_counter()
        name = name or f"ckpt-{state.counters.epoch:08d}.h5"
        path = os.path.join(self._abs_directory, name)
        self.counter += 1
        self.metrics[path] = state.counters.true_error
        ids = {"counter": self.counter, "parent_digest": self.parent_digest, "backend": self.backend,
               "data_source": self.data_source}
        queued = False
        if self._background and not wait:
            self.start()
            try:
                # Live buffers, no clones: submit copies them into the pipe before this returns.
                queued = self._writer.submit(path, take_wire(state, cursor=self._writer.cursor, **ids),
                                             self.retention.__dict__, self.metrics, self.protect, state.run_id)
            except WriterLost as exc:
                self._fall_back(exc)
        if not queued:
            arrays, attrs = finish(take(state, copy=False, **ids))
            if self._writer is not None:
                try:
                    self._writer.flush()
                except WriterLost as exc:
                    self._fall_back(exc)
                else:
                    if self._writer.last_digest is not None:
                        self.parent_digest = attrs["parent_digest"] = self._writer.last_digest
            self.parent_digest = write_snapshot(path, arrays, attrs)
            remember_run(path, state.run_id)
            point_latest(self._abs_directory, name)
            self.last_good = path
            if self._writer is not None:
                self._writer.last_path = None  # this synchronous save is newer than anything it wrote
            self.prune(state.run_id)
        self.saved.append(path)
        self.seconds += time.perf_counter() - t0
        return path

    def _fall_back(self, exc: Exception) -> None:
        """The helper is gone: warn once, save synchronously from now on."""
        import warnings

        writer, self._writer, self._background = self._writer, None, False
        if writer is not None and writer.last_path is not None:
            self.last_good = writer.last_path
        warnings.warn(f"{exc}; saving checkpoints synchronously from now on", RuntimeWarning, stacklevel=3)
        if writer is not None:
            try:
                writer.terminate()
            except OSError:
                pass

    def prune(self, run_id: str | None = None) -> list[str]:
        return apply_retention(self._abs_directory, self.retention, self.metrics, self.protect, run_id)

    def close(self, quiet: bool = False) -> None:
        """Wait for background writes and stop the helper process. ``quiet``: report nothing
        (the caller is already failing with the error that matters)."""
        if self._writer is not None:
            from .background import WriterLost

            writer = self._writer
            try:
                writer.flush()
            except WriterLost as exc:
                if quiet:
                    self._writer = None
                    writer.terminate()
                else:
                    self._fall_back(exc)
                return
            except SnapshotError as exc:
                self._writer = None
                writer.terminate()
                if quiet:
                    return
                raise CheckpointError(f"{exc}; the last good snapshot is {self._newest_good() or 'none'}") from None
            self._writer = None
            if writer.last_path is not None:
                self.last_good = writer.last_path
            writer.terminate()


class CheckpointError(SnapshotError):
    """A checkpoint could not be written; training stopped (the previous snapshots are intact)."""
