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


def _t(a) -> torch.Tensor:
    """A tensor over ``a`` (read-only memory maps are copied: kernels must not write them anyway)."""
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def advance_block(shared: dict, block: dict, params: dict) -> dict:
    """Run ``params['epochs']`` epochs (the first one measuring only if ``measure_first``).

    Returns the block's final arrays plus, for every epoch, all scores and the block-best
    candidate's post-epoch weights and correlations (or Cascade 2 output weights): enough for
    the driver to reconstruct the phase epoch by epoch and install the winner of any epoch.
    """
    X = _t(shared["X"])
    cascade2 = shared["kind"] == "cascade2"
    # Converted once per task, not per epoch (a Dask worker's arrays are read-only: _t copies them).
    E, ET = (_t(shared["R"]), _t(shared["RT"])) if cascade2 else (_t(shared["Ec"]), _t(shared["EcT"]))
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
            pb.train_cascade2(X, E, ET, shared["rr"], params["eps"], params["eps_out"], params["mu"], params["decay"])
        elif t == 0 and params["measure_first"]:
            pb.measure(X, E)
        else:
            pb.train_covariance(X, E, ET, params["eps"], params["mu"], params["decay"])
        out_scores[t] = scores.numpy()
        b = int(torch.argmax(scores))
        best[t] = b
        best_weights[t] = arrays["weights"][b].numpy()
        best_extra[t] = (arrays["out_weights"] if cascade2 else arrays["prev_cor"])[b].numpy()
    result = {k2: v.numpy() for k2, v in arrays.items()}
    result.update(scores=out_scores, best=best, best_weights=best_weights, best_extra=best_extra)
    return result


def advance_blocks(shared, blocks: list[dict], params: dict) -> list[dict]:
    """Several blocks in one task (one task per worker per chunk keeps task overhead low)."""
    if isinstance(shared, str):
        shared = load_shared(shared)
    return [advance_block(shared, b, params) for b in blocks]


_CACHE: dict[str, dict] = {}


def save_shared(shared: dict, directory: str) -> str:
    """Write a round's shared inputs once (``.npy`` files + JSON scalars) for worker processes."""
    import json
    import os

    scalars = {}
    for k, v in shared.items():
        if isinstance(v, np.ndarray):
            np.save(os.path.join(directory, f"{k}.npy"), v)
        else:
            scalars[k] = v
    with open(os.path.join(directory, "scalars.json"), "w") as fh:
        json.dump(scalars, fh)
    return directory


def load_shared(directory: str) -> dict:
    """Load a round's inputs, once per worker process and round."""
    import json
    import os

    if directory not in _CACHE:
        _CACHE.clear()
        with open(os.path.join(directory, "scalars.json")) as fh:
            shared = json.load(fh)
        for name in os.listdir(directory):
            if name.endswith(".npy"):
                shared[name[:-4]] = np.load(os.path.join(directory, name), allow_pickle=False)
        _CACHE[directory] = shared
    return _CACHE[directory]


class BlockRunner:
    """Advances blocks where it lives -- a Dask actor on one worker -- holding one round's inputs.

    Why an actor: a patience-rule round is cut into several chunks, and each Dask task costs a
    scheduler round trip (~10 ms on a 2-core LocalCluster, ~4 ms of scheduler CPU taken from the
    cores the workers compute on). Calls to an actor go from the driver straight to its worker
    (~1.5 ms). The runner keeps nothing the driver cannot rebuild: every call gets the blocks'
    full state and returns it, so a lost worker costs a retry of one chunk, never the result.
    """

    def __init__(self):
        self._token = None
        self._shared = None
        self._X = None
        self._x_key = None  # (values key, columns) of the inputs held in _X

    def begin(self, token: int, message: dict) -> None:
        """Take a round's inputs: ``X`` whole, or only the columns after those held (``X_tail``).

        Residuals come without their transposes (computed here: half the bytes on the wire).
        """
        message = dict(message)
        key = tuple(message.pop("X_key"))
        if "X" in message:
            self._X = np.array(message.pop("X"), dtype=np.float32, copy=True)
        else:
            tail = message.pop("X_tail", None)
            have = self._x_key
            width = 0 if tail is None else tail.shape[1]
            if have is None or have[0] != key[0] or have[1] + width != key[1]:
                raise RuntimeError(f"this worker holds inputs {have}, which the columns sent do not extend to {key}")
            if width:
                self._X = np.hstack([self._X, tail])
        self._x_key = key
        shared = {"X": self._X, "kind": message["kind"]}
        if message["kind"] == "cascade2":
            R = np.array(message["R"], dtype=np.float32, copy=True)
            shared.update(R=R, RT=np.ascontiguousarray(R.T), rr=message["rr"])
        else:
            Ec = np.array(message["Ec"], dtype=np.float32, copy=True)
            shared.update(Ec=Ec, EcT=np.ascontiguousarray(Ec.T))
        self._shared, self._token = shared, token

    def run(self, token: int, blocks: list[dict], params: dict) -> list[dict]:
        if token != self._token:
            raise RuntimeError(f"this worker holds the inputs of round {self._token}, not of round {token}")
        return [advance_block(self._shared, b, params) for b in blocks]

    def end(self, token: int) -> None:
        if token == self._token:  # frees the residuals; the inputs stay for the next round
            self._token = self._shared = None
