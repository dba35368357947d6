"""The unit of parallel work: advance one block of candidates by a few epochs.

A pure function of plain NumPy arrays (picklable, no state left behind), so any backend can
run it anywhere, retry it, or fall back to running it locally with identical results.
"""

from __future__ import annotations

import numpy as np
import torch

from ..candidates import PoolBlock, Scratch

BLOCK_KEYS = ("weights", "delta", "prev_slope", "prev_cor")
CASCADE2_KEYS = ("out_weights", "out_delta", "out_prev_slope")


def _t(a) -> torch.Tensor:
    """A tensor over ``a`` (read-only memory maps are copied: kernels must not write them anyway)."""
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


class BlockStepper:
    """One block of candidates advanced epoch by epoch from plain arrays, recording each epoch.

    The record of an epoch (all scores, the block-best candidate's post-epoch weights and
    correlations or Cascade 2 output weights) is what the driver needs to replay the phase
    epoch by epoch and install the winner of any epoch.
    """

    def __init__(self, shared: dict, block: dict, params: dict, scratch: Scratch | None = None):
        self.X = _t(shared["X"])
        self.cascade2 = shared["kind"] == "cascade2"
        # Converted once per stepper, not per epoch (a Dask worker's arrays are read-only: _t copies them).
        self.E, self.ET = (_t(shared["R"]), _t(shared["RT"])) if self.cascade2 else (_t(shared["Ec"]), _t(shared["EcT"]))
        self.rr = shared.get("rr")
        self.params = params
        self.arrays = {k: torch.from_numpy(np.array(block[k], dtype=np.float32, copy=True))
                       for k in BLOCK_KEYS + (CASCADE2_KEYS if self.cascade2 else ())}
        self.scores = torch.zeros(self.arrays["weights"].shape[0])
        self.block = PoolBlock([tuple(p) for p in block["plan"]], scores=self.scores, n_patterns=self.X.shape[0],
                               scratch=scratch, **self.arrays)

    def epoch(self, measure: bool) -> tuple:
        """One epoch; returns (scores, best index, best weights, best extra) as new arrays."""
        pb, p, a = self.block, self.params, self.arrays
        if self.cascade2:
            pb.train_cascade2(self.X, self.E, self.ET, self.rr, p["eps"], p["eps_out"], p["mu"], p["decay"])
        elif measure:
            pb.measure(self.X, self.E)
        else:
            pb.train_covariance(self.X, self.E, self.ET, p["eps"], p["mu"], p["decay"])
        b = int(torch.argmax(self.scores))
        extra = a["out_weights"] if self.cascade2 else a["prev_cor"]
        return self.scores.numpy().copy(), b, a["weights"][b].numpy().copy(), extra[b].numpy().copy()

    def state(self) -> dict:
        """The block's arrays now (copies)."""
        return {k: v.numpy().copy() for k, v in self.arrays.items()}


def block_result(state: dict, records: list) -> dict:
    """A block's state after the last of ``records`` plus every record, stacked per epoch."""
    result = dict(state)
    result.update(scores=np.stack([r[0] for r in records]), best=np.array([r[1] for r in records], np.int64),
                  best_weights=np.stack([r[2] for r in records]), best_extra=np.stack([r[3] for r in records]))
    return result


def advance_block(shared: dict, block: dict, params: dict, scratch: Scratch | None = None) -> dict:
    """Run ``params['epochs']`` epochs (the first one measuring only if ``measure_first``).

    Returns the block's final arrays plus, for every epoch, all scores and the block-best
    candidate's post-epoch weights and correlations (or Cascade 2 output weights).
    """
    stepper = BlockStepper(shared, block, params, scratch)
    records = [stepper.epoch(t == 0 and params["measure_first"]) for t in range(int(params["epochs"]))]
    return block_result(stepper.state(), records)


def scratch_for(shared: dict, blocks: list[dict]) -> Scratch:
    """One set of work buffers for blocks computed one after another (see Scratch)."""
    return Scratch(max(len(b["plan"]) for b in blocks), shared["X"].shape[0])


def advance_blocks(shared, blocks: list[dict], params: dict) -> list[dict]:
    """Several blocks in one task (one task per worker per chunk keeps task overhead low)."""
    scratch = scratch_for(shared, blocks) if blocks else None
    return [advance_block(shared, b, params, scratch) for b in blocks]
