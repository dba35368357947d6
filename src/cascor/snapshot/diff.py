"""Compare two snapshots by content (torch-free): architecture, config, every tensor, history, RNG states."""

from __future__ import annotations

import numpy as np

from ..errors import SnapshotError
from . import format as fmt
from .migrate import migrate
from .reader import read_snapshot


def _first_history_divergence(a: dict, b: dict) -> int | None:
    keys = [f"history/{k}" for k in fmt.HISTORY_EPOCH]
    n = min(len(a["history/epoch"]), len(b["history/epoch"]))
    for i in range(n):
        for k in keys:
            x, y = a[k][i], b[k][i]
            if not (x == y or (x != x and y != y)):
                return i
    return None if len(a["history/epoch"]) == len(b["history/epoch"]) else n


def diff_snapshots(path_a: str, path_b: str) -> dict:
    """A report with ``identical`` (training content), per-object differences and readable lines."""
    try:
        a, b = migrate(read_snapshot(path_a)), migrate(read_snapshot(path_b))
    except SnapshotError as exc:
        return {"identical": False, "error": str(exc), "lines": [f"error: {exc}"]}
    lines, objects = [], {}
    if a.config != b.config:
        keys = sorted(k for k in set(a.config) | set(b.config) if a.config.get(k) != b.config.get(k))
        lines.append("config differs: " + ", ".join(f"{k}: {a.config.get(k)!r} vs {b.config.get(k)!r}" for k in keys))
    meta_keys = sorted(k for k in set(a.meta) | set(b.meta) if a.meta.get(k) != b.meta.get(k))
    for k in meta_keys:
        lines.append(f"meta {k}: {a.meta.get(k)!r} vs {b.meta.get(k)!r}")
    training = sorted(n for n in set(a.arrays) | set(b.arrays) if not n.startswith("runtime/"))
    for name in training:
        x, y = a.arrays.get(name), b.arrays.get(name)
        if x is None or y is None:
            objects[name] = {"status": "only in " + ("b" if x is None else "a")}
        elif x.shape != y.shape or x.dtype != y.dtype:
            objects[name] = {"status": "shape/dtype", "a": f"{x.dtype.str}{x.shape}", "b": f"{y.dtype.str}{y.shape}"}
        elif x.tobytes() != y.tobytes():
            entry = {"status": "values"}
            if x.dtype.kind == "f":
                both = np.isfinite(x) & np.isfinite(y)
                entry["max_abs_diff"] = float(np.max(np.abs(x[both].astype(np.float64) - y[both]))) if both.any() else None
                entry["n_different"] = int(np.sum(x != y) - np.sum(np.isnan(x) & np.isnan(y)))
            objects[name] = entry
    for name, entry in objects.items():
        extra = f", max |diff| {entry['max_abs_diff']:.3g}" if entry.get("max_abs_diff") is not None else ""
        lines.append(f"tensor {name}: {entry['status']}{extra}")
    div = _first_history_divergence(a.arrays, b.arrays)
    if div is not None:
        lines.append(f"history diverges at entry {div}")
    runtime_same = a.runtime.get("globals") == b.runtime.get("globals") and all(
        np.array_equal(a.arrays[n], b.arrays.get(n, np.empty(0)))
        for n in a.arrays if n.startswith("runtime/"))
    identical = not lines
    lines.append("identical training state" if identical else "training states differ")
    if a.attrs["run_id"] != b.attrs["run_id"]:
        lines.append(f"note: different run ids ({a.attrs['run_id']} vs {b.attrs['run_id']})")
    if not runtime_same:
        lines.append("note: process-global RNG states at save time differ (not training state)")
    return {
        "identical": identical,
        "content_digest_a": a.attrs["content_digest"],
        "content_digest_b": b.attrs["content_digest"],
        "config_differs": a.config != b.config,
        "meta_differs": meta_keys,
        "tensors": objects,
        "history_divergence": div,
        "global_rng_identical": runtime_same,
        "lines": lines,
    }
