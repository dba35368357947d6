"""``cascor demo``: two-spirals end to end, including a stop and a resume in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from .errors import CascorError


def _cli(*args: str) -> dict:
    """Run ``python -m cascor ARGS --json -q`` in a new process; return its JSON summary."""
    proc = subprocess.run([sys.executable, "-m", "cascor", *args, "--json", "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CascorError(f"cascor {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _clear_previous_demo(directory: str) -> None:
    """A run directory holds one run: a demo run again replaces its own earlier runs, and
    nothing else (a folder holding anything but cascor run files is left and refused)."""
    from .snapshot.manager import CKPT_RE

    if not os.path.isdir(directory):
        return
    ours = {"run.json", ".cascor.lock", "latest.h5", "final.h5"}
    names = os.listdir(directory)
    if any(n not in ours and not CKPT_RE.match(n) and not n.startswith(".") for n in names):
        raise CascorError(f"{directory} holds files that are not a cascor run; pass another --out")
    shutil.rmtree(directory)


def run_demo(out: str, seed: int, preset: str, echo=print) -> bool:
    from .cli import _plot, _summary_lines
    from .snapshot import load
    from .snapshot.diff import diff_snapshots

    os.makedirs(out, exist_ok=True)
    common = ["--dataset", "two-spirals", "--preset", preset, "--seed", str(seed)]
    full_dir, split_dir = os.path.join(out, "uninterrupted"), os.path.join(out, "interrupted")
    for d in (full_dir, split_dir):
        _clear_previous_demo(d)
    echo(f"1. Training two-spirals (194 points, preset {preset!r}, seed {seed}) without interruption...")
    full = _cli("train", *common, "--out", full_dir)
    for line in _summary_lines(full):
        echo("   " + line)
    stop = max(1, full["epochs"] // 2)
    echo(f"2. Training again in a new process, stopping at epoch {stop}...")
    part = _cli("train", *common, "--out", split_dir, "--stop-after", str(stop))
    echo(f"   stopped at epoch {part['epochs']} with {part['hidden_units']} hidden units -> {part['snapshot']}")
    echo("3. Resuming from that snapshot in another fresh process...")
    rest = _cli("resume", os.path.join(split_dir, "latest.h5"), "--out", split_dir)
    echo(f"   finished: {rest['hidden_units']} hidden units, {rest['epochs']} epochs -> {rest['snapshot']}")
    report = diff_snapshots(os.path.join(full_dir, "final.h5"), os.path.join(split_dir, "final.h5"))
    if report["identical"]:
        echo("4. Stopped-and-resumed result is byte-identical to the uninterrupted run:")
        echo(f"   every tensor, quickprop slot, phase counter and history entry matches (content sha256 {report['content_digest_a'][:16]}...)")
    else:
        echo("4. MISMATCH between the resumed and the uninterrupted run:")
        for line in report["lines"]:
            echo("   " + line)
    state = load(os.path.join(full_dir, "final.h5")).state
    from .datasets import two_spirals

    for kind in ("boundary", "history", "network"):
        path = os.path.join(out, f"{kind}.png")
        _plot(state, kind, path, two_spirals)
        echo(f"   wrote {path}")
    return bool(report["identical"] and full["solved"])
