"""Snapshot cost: save and load+verify time and file size vs hidden units, and the overhead of
checkpointing at every unit install on the two-spirals benchmark (ratio against a run without
checkpoints, in the same process).

    python benchmarks/snapshot_io.py [--overhead-only] [--reps N]
"""

import argparse
import os
import statistics
import tempfile
import time

import torch

from cascor import snapshot, trainer
from cascor.config import preset
from cascor.datasets import encode_targets, two_spirals
from cascor.network import HiddenUnit
from cascor.snapshot.manager import CheckpointManager


def state_with_units(n_units, X, Y):
    cfg = preset("fahlman-spirals").replace(seed=1, max_units=n_units + 10)
    eng = trainer.start(cfg, X, Y)
    st = eng.state
    g = torch.Generator().manual_seed(0)
    for _ in range(n_units):
        w = torch.rand(st.network.fan_in, generator=g) - 0.5
        st.network.add_unit(HiddenUnit(w, "symmetric_sigmoid", 1.0), torch.zeros(1))
        st.output_slots.grow()
    # Put the run inside a candidate phase so the pool and its slots are in the file too.
    eng2 = trainer.resume(st, X, Y)
    while st.phase.name != "candidates" or st.pool is None:
        eng2.step()
    eng2.step()
    return st


def timed(fn, repeat=30):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead-only", action="store_true", help="skip the save/load table")
    parser.add_argument("--reps", type=int, default=10, help="interleaved repetitions of the overhead runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = two_spirals()
    X, Y = ds.X, encode_targets(ds.y, ds.classes, -0.5, 0.5)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.h5")
        if args.overhead_only:
            return checkpoint_overhead(X, Y, d, args.reps)
        print(f"{'hidden units':>12} | {'save ms':>8} | {'load+verify ms':>14} | {'verify only ms':>14} | {'file KB':>8}")
        for n in (0, 4, 15, 30, 60, 100):
            st = state_with_units(n, X, Y)
            save_s = timed(lambda: snapshot.save(st, path))
            load_s = timed(lambda: snapshot.load(path))
            ver_s = timed(lambda: snapshot.verify(path))
            print(f"{n:>12} | {save_s * 1e3:>8.2f} | {load_s * 1e3:>14.2f} | {ver_s * 1e3:>14.2f} | {os.path.getsize(path) / 1024:>8.1f}")

        checkpoint_overhead(X, Y, d, args.reps)


def checkpoint_overhead(X, Y, d, reps=10, seeds=range(1, 11)):
    """Training time with a checkpoint at every unit install vs without, same process.

    Runs are interleaved (each repetition alternates the order of the modes) and every run
    starts after the same pause, so drift of the machine affects all modes alike. Reported:
    the median of the per-(seed, repetition) ratios, and the ratio of the summed per-seed
    minima (the least noisy estimate of the intrinsic cost on a shared VM).
    """
    modes = ("plain", "synchronous", "background")
    times = {m: {s: [] for s in seeds} for m in modes}
    in_loop, saves = [], []
    for r in range(reps):
        for seed in seeds:
            cfg = preset("fahlman-spirals").replace(seed=seed)
            for mode in modes if r % 2 == 0 else modes[::-1]:
                mgr = None
                if mode != "plain":
                    # Started before the loop, as `cascor train` does (its start-up overlaps data loading).
                    mgr = CheckpointManager(os.path.join(d, f"{mode}-{r}-{seed}"), at_install=True,
                                            background=mode == "background").start()
                time.sleep(0.2)
                run = trainer.run(trainer.start(cfg, X, Y), callbacks=[mgr] if mgr else [])
                times[mode][seed].append(run.seconds)
                if mode == "background":
                    in_loop.append(mgr.seconds / run.seconds)
                    saves.append(len(mgr.saved))
                if mgr:
                    mgr.close()  # wait until every checkpoint is fsynced on disk
    print(f"\ncheckpoint at every unit install, two-spirals fahlman-spirals seeds {seeds.start}-{seeds.stop - 1}, "
          f"{reps} interleaved repetitions ({statistics.mean(saves):.1f} saves per run):")
    plain_min = sum(min(v) for v in times["plain"].values())
    print(f"  {'no checkpoints':32} median run {statistics.median(sum(times['plain'].values(), [])):.4f} s")
    for mode in modes[1:]:
        ratios = [b / p for s in seeds for p, b in zip(times["plain"][s], times[mode][s])]
        minima = sum(min(v) for v in times[mode].values()) / plain_min
        print(f"  {mode + ' saves':32} median run {statistics.median(sum(times[mode].values(), [])):.4f} s  "
              f"overhead: median of paired ratios {100 * (statistics.median(ratios) - 1):+.1f}%, "
              f"sum of per-seed minima {100 * (minima - 1):+.1f}%")
    print(f"  background: time inside save() (training process) {100 * statistics.median(in_loop):.1f}% of the run")


if __name__ == "__main__":
    main()
