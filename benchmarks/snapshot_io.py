"""Snapshot cost: save and load+verify time and file size vs hidden units, and the overhead of
checkpointing at every unit install on the two-spirals benchmark (ratio against a run without
checkpoints, in the same process).

    python benchmarks/snapshot_io.py
"""

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
    torch.set_num_threads(1)
    ds = two_spirals()
    X, Y = ds.X, encode_targets(ds.y, ds.classes, -0.5, 0.5)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.h5")
        print(f"{'hidden units':>12} | {'save ms':>8} | {'load+verify ms':>14} | {'verify only ms':>14} | {'file KB':>8}")
        for n in (0, 4, 15, 30, 60, 100):
            st = state_with_units(n, X, Y)
            save_s = timed(lambda: snapshot.save(st, path))
            load_s = timed(lambda: snapshot.load(path))
            ver_s = timed(lambda: snapshot.verify(path))
            print(f"{n:>12} | {save_s * 1e3:>8.2f} | {load_s * 1e3:>14.2f} | {ver_s * 1e3:>14.2f} | {os.path.getsize(path) / 1024:>8.1f}")

        print("\ncheckpoint at every unit install, two-spirals fahlman-spirals seeds 1-10 (medians):")
        plain, sync, bg, bg_durable, saves = [], [], [], [], []
        for seed in range(1, 11):
            cfg = preset("fahlman-spirals").replace(seed=seed)
            plain.append(trainer.run(trainer.start(cfg, X, Y)).seconds)
            mgr = CheckpointManager(os.path.join(d, f"sync{seed}"), at_install=True)
            sync.append(trainer.run(trainer.start(cfg, X, Y), callbacks=[mgr]).seconds)
            # Started before the loop, as `cascor train` does (its start-up overlaps data loading).
            mgr = CheckpointManager(os.path.join(d, f"bg{seed}"), at_install=True, background=True).start()
            time.sleep(0.5)
            t0 = time.perf_counter()
            bg.append(trainer.run(trainer.start(cfg, X, Y), callbacks=[mgr]).seconds)
            mgr.close()  # wait until every checkpoint is fsynced on disk
            bg_durable.append(time.perf_counter() - t0)
            saves.append(len(mgr.saved))
        p = statistics.median(plain)
        print(f"  no checkpoints                      {p:.3f} s")
        for label, xs in (("synchronous saves", sync), ("background writer (training loop)", bg),
                          ("background writer (until durable)", bg_durable)):
            m = statistics.median(xs)
            print(f"  {label:35} {m:.3f} s  overhead {100 * (m / p - 1):+.1f}%")
        print(f"  {statistics.mean(saves):.1f} saves per run; each save fsyncs the file and the directory")


if __name__ == "__main__":
    main()
