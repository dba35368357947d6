"""Faults and hostile input, measured: the figures behind docs/results.md's table.

1. Drain after kill -9: a `cascor train --checkpoint-every 1` is killed at a random moment; how
   long until its helper has written what it was handed and released the run directory (the
   time a `--resume` started at once waits).
2. `--checkpoint-every 1` on two-spirals, whole CLI command time: default and fahlman-spirals
   presets, keep-all and --keep-last 3, next to the same command without periodic checkpoints
   (same process tree, interleaved).
3. The hostile corpus (tests/hostile.py): how many files, and how each command answered.

    .venv/bin/python benchmarks/faults.py [--kills 40] [--reps 3]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def train_cmd(out, preset, *extra):
    return [sys.executable, "-m", "cascor", "train", "--dataset", "two-spirals", "--preset", preset, "--seed", "1",
            "-q", "--out", out, *extra]


def lock_released(directory) -> bool:
    path = os.path.join(directory, ".cascor.lock")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def drain_after_kill(kills: int, rng: random.Random) -> list[float]:
    times = []
    for k in range(kills):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run")
            proc = subprocess.Popen(train_cmd(out, "fahlman-spirals", "--checkpoint-every", "1"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not os.path.exists(os.path.join(out, "latest.h5")):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.05, 0.8))
            proc.kill()
            t0 = time.perf_counter()
            proc.wait()
            while not lock_released(out):
                time.sleep(0.002)
            times.append(time.perf_counter() - t0)
    return times


def every_epoch(reps: int) -> dict[str, list[float]]:
    modes = {
        "default, no periodic checkpoints": ("default",),
        "default, --checkpoint-every 1": ("default", "--checkpoint-every", "1"),
        "default, --checkpoint-every 1 --keep-last 3": ("default", "--checkpoint-every", "1", "--keep-last", "3"),
        "fahlman-spirals, no periodic checkpoints": ("fahlman-spirals",),
        "fahlman-spirals, --checkpoint-every 1": ("fahlman-spirals", "--checkpoint-every", "1"),
        "fahlman-spirals, --checkpoint-every 1 --keep-last 3": ("fahlman-spirals", "--checkpoint-every", "1",
                                                                "--keep-last", "3"),
    }
    out: dict[str, list[float]] = {k: [] for k in modes}
    for r in range(reps):
        order = list(modes.items())
        order = order[r % len(order):] + order[:r % len(order)]
        for label, (preset, *extra) in order:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                subprocess.run(train_cmd(os.path.join(tmp, "run"), preset, *extra), check=True,
                               stdout=subprocess.DEVNULL)
                out[label].append(time.perf_counter() - t0)
    return out


def corpus_counts() -> dict[str, int]:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from hostile import make_bases, make_corpus

    from cascor import snapshot
    from cascor.errors import SnapshotError

    with tempfile.TemporaryDirectory() as tmp:
        a, b = make_bases(tmp)
        corpus = make_corpus(a, b, os.path.join(tmp, "corpus"))
        refused_load = sum(1 for p in corpus.values() if _refused(snapshot.load, p, SnapshotError))
        proc = subprocess.run([sys.executable, "-m", "cascor", "snapshot", "verify", *corpus.values()],
                              capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        return {"files": len(corpus), "refused by load()": refused_load,
                "verify: INVALID lines": sum(line.startswith("INVALID") for line in lines),
                "verify: tracebacks": proc.stderr.count("Traceback"),
                "verify: escape characters printed": (proc.stdout + proc.stderr).count("\x1b")}


def _refused(fn, path, error) -> bool:
    try:
        fn(path)
    except error:
        return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(0)
    drains = drain_after_kill(args.kills, rng)
    print(f"drain after kill -9 ({len(drains)} kills): median {statistics.median(drains) * 1000:.0f} ms, "
          f"max {max(drains) * 1000:.0f} ms, over 1 s: {sum(d > 1.0 for d in drains)}")
    for label, times in every_epoch(args.reps).items():
        print(f"{label:55} median {statistics.median(times):6.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    for key, value in corpus_counts().items():
        print(f"corpus {key:35} {value}")


if __name__ == "__main__":
    main()
