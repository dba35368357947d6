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


def list_checkpoints(directory: str) -> list[SnapshotInfo]:
    out = []
    for name in os.listdir(directory):
        m = CKPT_RE.match(name)
        if m:
            out.append(SnapshotInfo(os.path.join(directory, name), int(m.group(1))))
    return sorted(out, key=lambda i: i.epoch)


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


def apply_retention(directory: str, rule: Retention, metrics: dict[str, float], protect: set[str]) -> list[str]:
    """Delete the checkpoints of ``directory`` that ``rule`` does not keep; never the one ``latest`` names."""
    link = os.path.join(directory, "latest.h5")
    if os.path.islink(link):
        protect = set(protect) | {os.path.abspath(os.path.realpath(link))}
    infos = [SnapshotInfo(os.path.abspath(i.path), i.epoch, metrics.get(os.path.abspath(i.path), float("nan")))
             for i in list_checkpoints(directory)]
    keep = select_keep(infos, rule, protect)
    removed = []
    for info in infos:
        if info.path not in keep:
            try:
                os.remove(info.path)
                removed.append(info.path)
            except OSError as exc:
                raise SnapshotError(f"cannot prune {info.path}: {exc.strerror}") from exc
    return removed


class CheckpointManager:
    """A trainer callback that saves by policy, prunes by retention and keeps ``latest`` current.

    With ``background=True`` checkpoints are written by a helper process (see
    :mod:`cascor.snapshot.background`); call :meth:`close` (or save a named final snapshot,
    which waits for them) before relying on the files.
    """

    def __init__(self, directory: str, *, every: int = 0, at_install: bool = True, at_phase_end: bool = False,
                 retention: Retention = Retention(), protect: set[str] = frozenset(), backend: dict | None = None,
                 data_source: dict | None = None, counter: int = 0, parent_digest: str = "",
                 background: bool = False):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._abs_directory = os.path.abspath(directory)
        self.every = every
        self.at_install = at_install
        self.at_phase_end = at_phase_end
        self.retention = retention
        self.protect = {os.path.abspath(p) for p in protect}
        self.backend = backend
        self.data_source = data_source
        self.counter = counter
        self.parent_digest = parent_digest
        self.metrics: dict[str, float] = {}
        self.seconds = 0.0  # time spent saving, so callers can report pure training time
        self.saved: list[str] = []
        self._last_phase: str | None = None
        self._background = background
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

            self._writer = BackgroundWriter()
        return self

    def epochs_until_due(self, state) -> int | None:
        """How far a multi-epoch step may go before this manager wants an epoch-boundary save."""
        if self.every > 0:
            return self.every - state.counters.epoch % self.every
        return None

    def save(self, state, name: str | None = None, wait: bool = False) -> str:
        """Save now. With ``wait`` (or without a background writer) the file is on disk when this
        returns, after every pending background write."""
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
            # Live buffers, no clones: submit copies them into the pipe before this returns.
            queued = self._writer.submit(path, take_wire(state, cursor=self._writer.cursor, **ids),
                                         self.retention.__dict__, self.metrics, self.protect)
        if not queued:
            arrays, attrs = finish(take(state, copy=False, **ids))
            if self._writer is not None:
                self._writer.flush()
                if self._writer.last_digest is not None:
                    self.parent_digest = attrs["parent_digest"] = self._writer.last_digest
            self.parent_digest = write_snapshot(path, arrays, attrs)
            point_latest(self.directory, name)
            self.prune()
        self.saved.append(path)
        self.seconds += time.perf_counter() - t0
        return path

    def prune(self) -> list[str]:
        return apply_retention(self.directory, self.retention, self.metrics, self.protect)

    def close(self) -> None:
        """Wait for background writes and stop the helper process."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
