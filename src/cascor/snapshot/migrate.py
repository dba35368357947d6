"""Format migrations: a chain of pure functions, one per version step.

Each function takes a :class:`RawSnapshot` of version ``from`` and returns one of the next
version (meta, config and arrays rewritten; nothing read from disk, nothing imported by
name). Loading applies the chain up to the current version; ``cascor snapshot upgrade``
applies it and rewrites the file atomically. Golden files of every released version live
in tests/fixtures/ and must load forever.

Released versions: 1.0 (the first); 1.1 (``runtime/meta`` records the library versions a
bit-exact resume depends on, ``versions``; a 1.0 file migrates with ``versions: null``, unknown).
"""

from __future__ import annotations

from typing import Callable

from ..errors import IncompatibleSnapshotError
from . import format as fmt
from .reader import RawSnapshot

Migration = Callable[[RawSnapshot], RawSnapshot]


def _v1_0_to_v1_1(raw: RawSnapshot) -> RawSnapshot:
    """1.1 adds ``runtime/meta.versions``; a 1.0 file did not record them."""
    raw.runtime = dict(raw.runtime, versions=None)
    return raw


MIGRATIONS: dict[tuple[int, int], tuple[tuple[int, int], Migration]] = {(1, 0): ((1, 1), _v1_0_to_v1_1)}
RELEASED = ((1, 0), (1, 1))


def migrate(raw: RawSnapshot) -> RawSnapshot:
    """Bring ``raw`` to the current format version, one step at a time."""
    while raw.version != fmt.FORMAT_VERSION:
        step = MIGRATIONS.get(raw.version)
        if step is None:
            raise IncompatibleSnapshotError(
                f"{raw.path}: no migration from snapshot format {fmt.version_string(raw.version)} "
                f"to {fmt.version_string()}"
            )
        target, fn = step
        raw = fn(raw)
        raw.version = target
    return raw
