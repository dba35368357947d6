"""The unit of parallel work: advance one block of candidates by a few epochs.

A pure function of plain NumPy arrays (picklable, no state left behind), so any backend can
run it anywhere, retry it, or fall back to running it locally with identical results.
"""

from __future__ import annotations

import numpy as np
import torch

from ..candidates import PoolBlock

BLOCK_KEYS = ("weights", "delta", "prev_slope", "prev_cor")
CASCADE2_KEYS = ("out_weights", "out_delta", "out_prev_slope")


def advance_block(shared: dict, block: dict, params: dict) -> dict:
    """Run ``params['epochs']`` epochs (the first one measuring only if ``measure_first``).

    Returns the block's final arrays plus, for every epoch, all scores and the block-best
    candidate's post-epoch weights and correlations (or Cascade 2 output weights): enough for
    the driver to reconstruct the phase epoch by epoch and install the winner of any epoch.
    """
    X = torch.from_numpy(shared["X"])
    cascade2 = shared["kind"] == "cascade2"
    arrays = {k: torch.from_numpy(np.array(block[k], dtype=np.float32, copy=True))
              for k in BLOCK_KEYS + (CASCADE2_KEYS if cascade2 else ())}
    C = arrays["weights"].shape[0]
    scores = torch.zeros(C)
    pb = PoolBlock([tuple(p) for p in block["plan"]], scores=scores, n_patterns=X.shape[0], **arrays)
    k = int(params["epochs"])
    out_scores = np.empty((k, C), np.float32)
    best = np.empty(k, np.int64)
    best_weights = np.empty((k, arrays["weights"].shape[1]), np.float32)
    best_extra = np.empty((k, arrays["prev_cor"].shape[1]), np.float32)
    for t in range(k):
        if cascade2:
            pb.train_cascade2(X, torch.from_numpy(shared["R"]), torch.from_numpy(shared["RT"]), shared["rr"],
                              params["eps"], params["eps_out"], params["mu"], params["decay"])
        elif t == 0 and params["measure_first"]:
            pb.measure(X, torch.from_numpy(shared["Ec"]))
        else:
            pb.train_covariance(X, torch.from_numpy(shared["Ec"]), torch.from_numpy(shared["EcT"]),
                                params["eps"], params["mu"], params["decay"])
        out_scores[t] = scores.numpy()
        b = int(torch.argmax(scores))
        best[t] = b
        best_weights[t] = arrays["weights"][b].numpy()
        best_extra[t] = (arrays["out_weights"] if cascade2 else arrays["prev_cor"])[b].numpy()
    result = {k2: v.numpy() for k2, v in arrays.items()}
    result.update(scores=out_scores, best=best, best_weights=best_weights, best_extra=best_extra)
    return result
