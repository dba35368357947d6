"""Two-spirals (194 points) over seeds: solved count, hidden units, epochs, train seconds.

    python benchmarks/two_spirals.py [--preset fahlman-spirals] [--seeds 1-20]

train_seconds is the in-process training loop only (no imports, no I/O), one torch thread.
"""

import argparse
import statistics

import numpy as np
import torch

from cascor import trainer
from cascor.config import preset
from cascor.datasets import encode_targets, two_spirals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fahlman-spirals")
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.seeds.split("-"))
    torch.set_num_threads(args.threads)
    ds = two_spirals()
    Y = encode_targets(ds.y, ds.classes, -0.5, 0.5)
    rows = []
    for seed in range(lo, hi + 1):
        eng = trainer.start(preset(args.preset).replace(seed=seed), ds.X, Y)
        report = trainer.run(eng)
        c = eng.state.counters
        rows.append((seed, eng.state.status == "solved", eng.state.network.n_hidden, c.epoch, c.output_epochs,
                     c.candidate_epochs, report.seconds))
        print(f"seed {seed:3d}: {eng.state.status:9s} units {rows[-1][2]:3d} epochs {c.epoch:5d} "
              f"({c.output_epochs} out + {c.candidate_epochs} cand) {report.seconds:.3f} s", flush=True)
    units = [r[2] for r in rows]
    epochs = [r[3] for r in rows]
    secs = [r[6] for r in rows]
    print(f"\npreset {args.preset}, seeds {lo}-{hi}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"solved            {sum(r[1] for r in rows)}/{len(rows)}")
    print(f"hidden units      mean {np.mean(units):.2f}  median {statistics.median(units):.1f}  range {min(units)}-{max(units)}"
          "   (paper: mean 15.2, median 15, range 12-19)")
    print(f"epochs            mean {np.mean(epochs):.0f}  median {statistics.median(epochs):.0f}"
          f"  (output {np.mean([r[4] for r in rows]):.0f} + candidate {np.mean([r[5] for r in rows]):.0f})   (paper: mean 1700)")
    print(f"train seconds     median {statistics.median(secs):.3f}  mean {np.mean(secs):.3f}  max {max(secs):.3f}")


if __name__ == "__main__":
    main()
