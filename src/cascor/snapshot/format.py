"""The snapshot format: which objects a file holds, their dtypes and shapes, and digests.

Pure NumPy/JSON (no torch, no h5py) so that the layout can be checked against a file's
metadata before any tensor is read. See docs/snapshot-format.md for the prose version.

A snapshot is the training state tree split in two:
* ``meta``: a JSON document with every scalar, name and counter (stored as a UTF-8 byte
  dataset, so it is digested like any tensor), and ``config``: the run's config as JSON;
* tensors: fixed-name datasets whose dtype and shape follow from meta and config.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

FORMAT_NAME = "cascor-snapshot"
FORMAT_VERSION = (1, 6)  # 1.1: library versions; 1.2: validation, per-unit scores; 1.3: config.refit;
# 1.4: config.input_l2; 1.5: the input scaling; 1.6: config.candidate_rows (migrate.py)
USERBLOCK_SIZE = 512
MAGIC = b"CASCOR-SNAPSHOT\n"

# Root attributes: identity metadata. Not part of the content digest (two saves of the same
# state have the same content digest), but covered by the whole-file digest in the user block.
ROOT_ATTRS = (
    "format",
    "format_version",
    "library_version",
    "run_id",
    "snapshot_counter",
    "parent_digest",
    "created",
    "content_digest",
)
DIGEST_ATTR = "sha256"

F4, F8, I1, I4, I8, U1 = "<f4", "<f8", "|i1", "<i4", "<i8", "|u1"

HISTORY_EPOCH = {"epoch": I8, "phase": I1, "hidden_units": I4, "true_error": F8, "error_bits": I8, "best_score": F8}
HISTORY_UNIT = {"epoch": I8, "candidate": I4, "score": F8, "steepness": F8}
# meta.validation's scalars, as ValidationState.state_dict names them (format 1.2), besides "split".
VALIDATION_META = ("n_patterns", "n_total", "digest", "best_n_units", "best_score", "best_loss", "since_best")
HISTORY_SCORE = {"epoch": I8, "hidden_units": I4, "train_loss": F8, "train_score": F8, "val_loss": F8, "val_score": F8}


def version_string(version: tuple[int, int] = FORMAT_VERSION) -> str:
    return f"{version[0]}.{version[1]}"


def parse_version(text: str) -> tuple[int, int]:
    """'MAJOR.MINOR' in plain ASCII digits (no sign, no leading zeros); ValueError otherwise."""
    from .schema import parse_version as strict

    return strict(text)


RUNTIME_PREFIX = "runtime/"
JSON_OBJECTS = ("meta", "config", "runtime/meta")


def expected_layout(meta: dict, config: dict, runtime: dict | None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor a 1.x file must hold (besides the JSON objects), with dtype and shape.

    Raises KeyError/TypeError/ValueError on malformed meta; the reader turns those into
    CorruptSnapshotError naming the field.
    """
    I, O, P = int(meta["n_inputs"]), int(meta["n_outputs"]), int(meta["n_patterns"])
    H = len(meta["hidden_activations"])
    F = 1 + I + H
    if min(I, O, P) < 1 or H > int(config["max_units"]):
        raise ValueError(f"sizes out of range: inputs {I}, outputs {O}, patterns {P}, hidden {H}")
    layout: dict[str, tuple[str, tuple[int, ...]]] = {
        "network/output_weights": (F4, (O, F)),
        # Hidden unit k has fan-in 1 + I + k (bias, inputs, earlier units): packed end to end.
        "network/hidden_weights": (F4, (H * (1 + I) + H * (H - 1) // 2,)),
        "network/hidden_steepness": (F8, (H,)),
        "optimizer/output_delta": (F4, (O, F)),
        "optimizer/output_prev_slope": (F4, (O, F)),
        "residual/errors": (F4, (P, O)),
        "residual/diffs": (F4, (P, O)),
    }
    n_epochs, n_units = int(meta["history_epochs"]), len(meta["history_unit_activations"])
    for key, dtype in HISTORY_EPOCH.items():
        layout[f"history/{key}"] = (dtype, (n_epochs,))
    for key, dtype in HISTORY_UNIT.items():
        layout[f"history/unit_{key}"] = (dtype, (n_units,))
    if "history_scores" in meta:  # format 1.2 (an older file gains empty columns by migration)
        for key, dtype in HISTORY_SCORE.items():
            layout[f"history/score_{key}"] = (dtype, (int(meta["history_scores"]),))
    val = meta.get("validation")
    if val is not None:
        if val["split"]:
            layout["validation/index"] = (I8, (int(val["n_patterns"]),))
        best = int(val["best_n_units"])
        if best > H:
            raise ValueError(f"the best network has {best} units but the network has {H}")
        if best >= 0:
            layout["validation/best_weights"] = (F4, (O, 1 + I + best))
    if meta.get("input_scaling"):  # format 1.5 (an older file gains ``false`` by migration)
        layout["inputs/mean"] = (F8, (I,))
        layout["inputs/scale"] = (F8, (I,))
    pool = meta["pool"]
    if pool is not None:
        C = len(pool["activations"])
        if C != int(config["pool_size"]):
            raise ValueError(f"pool has {C} candidates but config pool_size is {config['pool_size']}")
        layout.update({
            "pool/weights": (F4, (C, F)),
            "pool/delta": (F4, (C, F)),
            "pool/prev_slope": (F4, (C, F)),
            "pool/prev_cor": (F4, (C, O)),
            "pool/scores": (F4, (C,)),
            "pool/steepness": (F8, (C,)),
        })
        if config["candidate_score"] == "cascade2":
            for key in ("out_weights", "out_delta", "out_prev_slope"):
                layout[f"pool/{key}"] = (F4, (C, O))
    # The runtime section: the process-global RNG states at save time and the parallel
    # backend's settings. Not training state, so not part of the content digest.
    glob = (runtime or {}).get("globals") or {}
    if "numpy_legacy" in glob:
        layout["runtime/numpy_legacy_key"] = ("<u4", (624,))
    if glob.get("torch_cpu"):
        layout["runtime/torch_cpu"] = (U1, (int(glob["torch_cpu"]),))
    for i, n in enumerate(glob.get("torch_cuda", [])):
        layout[f"runtime/torch_cuda_{i}"] = (U1, (int(n),))
    return layout


def working_bytes(meta: dict, config: dict) -> int:
    """About how many bytes a run rebuilt from ``meta``/``config`` allocates up front: the
    hidden-value cache, the output weights and their quickprop slots, and the candidate pool,
    all sized for ``max_units``. Checked against the reader's limit before anything is built."""
    I, O, P = int(meta["n_inputs"]), int(meta["n_outputs"]), int(meta["n_patterns"])
    if meta.get("validation") is not None:
        P += int(meta["validation"]["n_patterns"])  # the held-out rows have the same cache
    width = 1 + I + int(config["max_units"])
    pool = int(config["pool_size"])
    return 4 * (P * width + 3 * O * width + 3 * pool * width + 2 * P * O + 3 * pool * O)


def tensor_digest(array: np.ndarray) -> str:
    """SHA-256 over dtype, shape and the C-order bytes, so a reshape or retype is a mismatch too."""
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def content_digest(digests: dict[str, str]) -> str:
    """The manifest digest: one SHA-256 over every training-state object's name and digest.

    The runtime section is left out, so the same training state saved from two processes
    has the same content digest; each runtime object is still checked by its own digest.
    """
    h = hashlib.sha256()
    for name in sorted(n for n in digests if not n.startswith(RUNTIME_PREFIX)):
        h.update(f"{name}={digests[name]}\n".encode())
    return h.hexdigest()


def encode_json(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True, allow_nan=True).encode(), dtype=np.uint8)


def decode_json(array: np.ndarray):
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode())


def userblock(body_digest: str, size: int, version: tuple[int, int] = FORMAT_VERSION) -> bytes:
    """The 512-byte header: magic, then JSON with the SHA-256 of every byte after the block."""
    doc = json.dumps({"format_version": version_string(version), "sha256": body_digest, "size": size}).encode()
    block = MAGIC + doc + b"\n"
    return block.ljust(USERBLOCK_SIZE, b"\0")


def parse_userblock(block: bytes) -> dict:
    """Raises ValueError when the block is not a cascor header."""
    if len(block) < USERBLOCK_SIZE or not block.startswith(MAGIC):
        raise ValueError("missing the cascor snapshot header (not a cascor snapshot, or truncated)")
    doc, sep, padding = block[len(MAGIC):USERBLOCK_SIZE].partition(b"\n")
    if not sep or padding.strip(b"\0"):
        raise ValueError("damaged snapshot header (bytes after the header line must be zero)")
    info = json.loads(doc.decode())
    if (
        not isinstance(info, dict)
        or set(info) != {"format_version", "sha256", "size"}
        or not isinstance(info["sha256"], str)
        or not isinstance(info["size"], int)
        or not isinstance(info["format_version"], str)
    ):
        raise ValueError("malformed snapshot header")
    return info
