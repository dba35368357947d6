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
from . import save as save_snapshot
from .writer import _fsync_dir, atomic_copy

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


class CheckpointManager:
    """A trainer callback that saves by policy, prunes by retention and keeps ``latest`` current."""

    def __init__(self, directory: str, *, every: int = 0, at_install: bool = True, at_phase_end: bool = False,
                 retention: Retention = Retention(), protect: set[str] = frozenset(), backend: dict | None = None,
                 data_source: dict | None = None, counter: int = 0, parent_digest: str = ""):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
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

    def __call__(self, engine, event: str) -> None:
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

    def save(self, state, name: str | None = None) -> str:
        t0 = time.perf_counter()
        name = name or f"ckpt-{state.counters.epoch:08d}.h5"
        path = os.path.join(self.directory, name)
        self.counter += 1
        self.parent_digest = save_snapshot(state, path, counter=self.counter, parent_digest=self.parent_digest,
                                           backend=self.backend, data_source=self.data_source)
        self.metrics[os.path.abspath(path)] = state.counters.true_error
        point_latest(self.directory, name)
        self.saved.append(path)
        self.prune()
        self.seconds += time.perf_counter() - t0
        return path

    def prune(self) -> list[str]:
        infos = [SnapshotInfo(os.path.abspath(i.path), i.epoch, self.metrics.get(os.path.abspath(i.path), float("nan")))
                 for i in list_checkpoints(self.directory)]
        keep = select_keep(infos, self.retention, self.protect | {self._latest_target()})
        removed = []
        for info in infos:
            if info.path not in keep:
                try:
                    os.remove(info.path)
                    removed.append(info.path)
                except OSError as exc:
                    raise SnapshotError(f"cannot prune {info.path}: {exc.strerror}") from exc
        return removed

    def _latest_target(self) -> str:
        link = os.path.join(self.directory, "latest.h5")
        return os.path.abspath(os.path.realpath(link)) if os.path.islink(link) else ""
