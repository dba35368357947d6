"""Per-round candidate training time on a large synthetic problem, for each backend vs local.

20,000 patterns, 20 inputs, 5 outputs, 10 hidden units already installed (fan-in 31); pools of
32 and 128, candidate rounds of exactly 30 epochs (patience off) or ended by the patience rule.
Each measurement trains 4 units in a row (candidate rounds timed, output phases between them
not), as a run does: the first round of an engine sends the inputs whole, later ones only
the new unit's column. Every backend must install the same units (checked). Also: the auto
policy on two-spirals.

    python benchmarks/parallel.py [--workers 2] [--repeat 6] [--backends processes,dask] [--skip-auto]
                                  [--scheduler tcp://HOST:8786]   # dask on an existing cluster
"""

import argparse
import statistics
import time

import numpy as np
import torch

from cascor import trainer
from cascor.config import preset
from cascor.datasets import encode_targets, two_spirals
from cascor.network import HiddenUnit
from cascor.parallel import make_backend
from cascor.state import TrainState


def synthetic_state(pool: int, block: int, patience: int = 0):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 20)).astype(np.float32)
    W = rng.normal(size=(20, 5)).astype(np.float32)
    Y = (np.tanh(X @ W) * 0.4).astype(np.float32)
    cfg = preset("cascor1c").replace(seed=1, pool_size=pool, candidate_block=block, input_patience=patience,
                                     input_epochs=30 if patience == 0 else 100, output_epochs=5, max_units=20,
                                     score_threshold=0.01)  # never solved: every round is measured
    eng = trainer.start(cfg, X, Y)
    st = eng.state
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        st.network.add_unit(HiddenUnit(torch.rand(st.network.fan_in, generator=g) - 0.5, "symmetric_sigmoid", 1.0),
                            torch.zeros(5))
        st.output_slots.grow()
    eng = trainer.resume(st, X, Y)
    while st.phase.name != "candidates":
        eng.step()
    return st.state_dict(), X, Y


def rounds(state_dict, X, Y, backend, n=4):
    """Seconds per candidate round (mean of ``n`` rounds in a row) and the installed units' weights."""
    import copy

    eng = trainer.resume(TrainState.from_state_dict(copy.deepcopy(state_dict)), X, Y, backend=backend)
    spent, installed = 0.0, 0
    while installed < n:
        candidates = eng.state.phase.name == "candidates"
        t0 = time.perf_counter()
        event = eng.step()
        if candidates:
            spent += time.perf_counter() - t0
        installed += event == "installed"
        if event in ("solved", "max_units"):
            raise RuntimeError(f"the synthetic run ended ({event}) after {installed} of {n} units")
    units = eng.state.network.units[-n:]
    return spent / n, torch.cat([u.weights for u in units])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--backends", default="processes,dask", help="compared with local, comma-separated")
    ap.add_argument("--skip-auto", action="store_true", help="skip the two-spirals auto-policy check")
    ap.add_argument("--scheduler", help="run the dask backend on this existing cluster (default: embedded)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = ["local"] + [n for n in args.backends.split(",") if n]
    backends = {n: make_backend(n, workers=args.workers, scheduler=args.scheduler if n == "dask" else None)
                for n in names}
    try:
        print(f"{'pool':>5} {'block':>5} {'round':>14} | " + " | ".join(f"{n:>18}" for n in names))
        for pool, block, patience in ((32, 16, 0), (128, 32, 0), (128, 32, 8)):
            sd, X, Y = synthetic_state(pool, block, patience)
            runs = {n: [] for n in names}
            for n in names:
                rounds(sd, X, Y, backends[n], 1)  # warm-up: worker start, imports, caches
            # Interleaved, the order rotating every repetition: this 2-core VM drifts by ~10% over
            # minutes, so each backend is compared with the local run next to it.
            for rep in range(args.repeat):
                for n in names[rep % len(names):] + names[:rep % len(names)]:
                    runs[n].append(rounds(sd, X, Y, backends[n]))
            times = {n: statistics.median(r[0] for r in runs[n]) for n in names}
            ratio = {n: statistics.median(a[0] / b[0] for a, b in zip(runs["local"], runs[n])) for n in names}
            weights = {n: runs[n][0][1] for n in names}
            same = all(torch.equal(weights[n], weights["local"]) for n in names)
            cells = [f"{times[n]:7.3f} s ({ratio[n]:4.2f}x)" for n in names]
            kind = "30 epochs" if patience == 0 else f"patience {patience}"
            print(f"{pool:>5} {block:>5} {kind:>14} | " + " | ".join(f"{c:>18}" for c in cells) + f"   identical: {same}")
    finally:
        for b in backends.values():
            b.close()

    if args.skip_auto:
        return
    ds = two_spirals()
    Ys = encode_targets(ds.y, ds.classes, -0.5, 0.5)
    auto = make_backend("auto", workers=args.workers)
    try:
        loc, aut = [], []
        for seed in range(1, 11):
            cfg = preset("fahlman-spirals").replace(seed=seed)
            loc.append(trainer.run(trainer.start(cfg, ds.X, Ys)).seconds)
            aut.append(trainer.run(trainer.start(cfg, ds.X, Ys, backend=auto)).seconds)
        print(f"\ntwo-spirals, auto vs local (median of 10 seeds): {statistics.median(aut):.3f} s vs "
              f"{statistics.median(loc):.3f} s ({100 * (statistics.median(aut) / statistics.median(loc) - 1):+.1f}%)")
    finally:
        auto.close()


if __name__ == "__main__":
    main()
