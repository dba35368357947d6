"""N-bit parity, N = 2..8, Gaussian hidden units, 5 trials each, side by side with the paper.

    python benchmarks/parity.py [--preset parity] [--trials 5]
"""

import argparse

import numpy as np
import torch

from cascor import trainer
from cascor.config import preset
from cascor.datasets import encode_targets, parity

PAPER = {2: ("1", 24), 3: ("1", 32), 4: ("2", 66), 5: ("2-3", 142), 6: ("3", 161), 7: ("4-5", 292), 8: ("4-5", 357)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="parity")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = range(args.first_seed, args.first_seed + args.trials)
    print(f"preset {args.preset}, seeds {seeds.start}-{seeds.stop - 1}")
    print(f"{'N':>2} | {'solved':>6} | {'units (cascor)':>14} | {'units (paper)':>13} | {'mean epochs (cascor)':>20} | {'mean epochs (paper)':>19}")
    for n in range(2, 9):
        ds = parity(n)
        Y = encode_targets(ds.y, ds.classes, -0.5, 0.5)
        units, epochs, solved = [], [], 0
        for seed in seeds:
            eng = trainer.start(preset(args.preset).replace(seed=seed), ds.X, Y)
            trainer.run(eng)
            solved += eng.state.status == "solved"
            units.append(eng.state.network.n_hidden)
            epochs.append(eng.state.counters.epoch)
        rng = f"{min(units)}" if min(units) == max(units) else f"{min(units)}-{max(units)}"
        print(f"{n:>2} | {solved:>4}/{args.trials} | {rng:>14} | {PAPER[n][0]:>13} | {np.mean(epochs):>20.1f} | {PAPER[n][1]:>19}")


if __name__ == "__main__":
    main()
