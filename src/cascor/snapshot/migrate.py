"""Format migrations: a chain of pure functions, one per version step.

Each function takes a :class:`RawSnapshot` of version ``from`` and returns one of the next
version (meta, config and arrays rewritten; nothing read from disk, nothing imported by
name). Loading applies the chain up to the current version; ``cascor snapshot upgrade``
applies it and rewrites the file atomically. Golden files of every released version live
in tests/fixtures/ and must load forever.

Released versions: 1.0 (the first); 1.1 (``runtime/meta`` records the library versions a
bit-exact resume depends on, ``versions``; a 1.0 file migrates with ``versions: null``, unknown);
1.2 (held-out data: ``meta.validation`` with ``validation/index`` and ``validation/best_weights``;
the per-phase-end score table ``history/score_*`` counted by ``meta.history_scores``; the config
fields ``validation_fraction``, ``n_iter_no_change``, ``tol``, ``output_step``, ``output_loss``,
``output_l2``; the status ``early_stopped``. A 1.1
file migrates as a run without held-out data, with an empty score table and every config field
written out, the new ones at their defaults, which change nothing for a run without held-out data);
1.3 (the config field ``refit``: a run that chose its size on held-out data trains the chosen
network's output layer on all its data once it finishes; a 1.2 file migrates with
``refit: false``, which is what every 1.2 run did); 1.4 (the config field ``input_l2``: an L2
penalty on the candidates' input weights relative to the residual's RMS; a 1.3 file migrates
with ``input_l2: 0.0``, which adds nothing to the decay every 1.3 run used); 1.5 (the run's input
scaling: ``meta.input_scaling`` and, when true, ``inputs/mean`` and ``inputs/scale``, the
standardisation the network's inputs went through; a 1.4 file migrates with ``input_scaling:
false``: every 1.4 run used its data's columns as they were); 1.6 (the config field
``candidate_rows``: each candidate phase trains on a random subset of that many rows; a 1.5 file
migrates with ``candidate_rows: 0``, every row, as every 1.5 run trained).
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


def _v1_1_to_v1_2(raw: RawSnapshot) -> RawSnapshot:
    """1.2 adds held-out data and the score table; a 1.1 run had neither."""
    import numpy as np

    from ..config import CascorConfig

    raw.meta = dict(raw.meta, validation=None, history_scores=0)
    for key, dtype in fmt.HISTORY_SCORE.items():
        raw.arrays[f"history/score_{key}"] = np.zeros(0, dtype=dtype)
    # Every field written out (missing ones, like candidate_block in early 1.0 files, at their
    # defaults): the upgraded file holds exactly the config this version would write.
    raw.config = CascorConfig.from_dict(dict(raw.config)).to_dict()
    return raw


def _v1_2_to_v1_3(raw: RawSnapshot) -> RawSnapshot:
    """1.3 adds the config field ``refit``; no 1.2 run refit (the estimators' refit happened
    after training, in memory)."""
    raw.config = dict(raw.config, refit=False)
    return raw


def _v1_3_to_v1_4(raw: RawSnapshot) -> RawSnapshot:
    """1.4 adds the config field ``input_l2``; at 0 the candidates' decay is ``input_decay``
    alone, as in every 1.3 run."""
    raw.config = dict(raw.config, input_l2=0.0)
    return raw


def _v1_4_to_v1_5(raw: RawSnapshot) -> RawSnapshot:
    """1.5 adds ``meta.input_scaling``; a 1.4 run trained on its data's columns as they were."""
    raw.meta = dict(raw.meta, input_scaling=False)
    return raw


def _v1_5_to_v1_6(raw: RawSnapshot) -> RawSnapshot:
    """1.6 adds the config field ``candidate_rows``; at 0 a candidate phase reads every row, as
    in every 1.5 run."""
    raw.config = dict(raw.config, candidate_rows=0)
    return raw


MIGRATIONS: dict[tuple[int, int], tuple[tuple[int, int], Migration]] = {
    (1, 0): ((1, 1), _v1_0_to_v1_1),
    (1, 1): ((1, 2), _v1_1_to_v1_2),
    (1, 2): ((1, 3), _v1_2_to_v1_3),
    (1, 3): ((1, 4), _v1_3_to_v1_4),
    (1, 4): ((1, 5), _v1_4_to_v1_5),
    (1, 5): ((1, 6), _v1_5_to_v1_6),
}
RELEASED = ((1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6))


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
