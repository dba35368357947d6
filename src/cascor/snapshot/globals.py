"""The process-global RNG states: recorded in every snapshot, restored only on request.

cascor never draws from these generators; they are recorded because users' callbacks and
data pipelines may, and a resumed experiment may want them back. Capturing reads state
without consuming anything. torch is only consulted if the process already imported it.
"""

from __future__ import annotations

import random
import sys

import numpy as np

from ..errors import SnapshotError


def capture_raw(numpy_generators: dict | None = None) -> dict:
    """The states exactly as the libraries return them (tuples, arrays): cheap to take in the
    training loop, and plain enough to ship to the snapshot helper as they are."""
    torch = sys.modules.get("torch")
    cpu = cuda = None
    if torch is not None:
        cpu = torch.get_rng_state().numpy()
        if torch.cuda.is_initialized():  # never initialise CUDA just to look
            cuda = [s.numpy() for s in torch.cuda.get_rng_state_all()]
    return {
        "python_random": random.getstate(),
        "numpy_legacy": np.random.get_state(),
        # PCG64 and friends hold 128-bit integers: JSON keeps them exact, HDF5 attributes cannot.
        "numpy_generators": {k: g.bit_generator.state for k, g in (numpy_generators or {}).items()},
        "torch_cpu": cpu,
        "torch_cuda": cuda,
    }


def encode_globals(raw: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """capture_raw()'s tree (array leaves may arrive as bytes) -> the runtime JSON and arrays of format 1.0."""
    version, internal, gauss_next = raw["python_random"]
    name, keys, pos, has_gauss, cached = raw["numpy_legacy"]
    glob: dict = {
        "python_random": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy_legacy": {"bit_generator": name, "pos": int(pos), "has_gauss": int(has_gauss),
                         "cached_gaussian": float(cached)},
        "numpy_generators": raw["numpy_generators"],
    }
    arrays = {"runtime/numpy_legacy_key": np.frombuffer(keys, dtype=np.uint32).astype("<u4", copy=False)}
    if raw["torch_cpu"] is not None:
        cpu = np.frombuffer(raw["torch_cpu"], dtype=np.uint8)
        glob["torch_cpu"] = int(cpu.size)
        arrays["runtime/torch_cpu"] = cpu
        if raw["torch_cuda"]:
            states = [np.frombuffer(s, dtype=np.uint8) for s in raw["torch_cuda"]]
            glob["torch_cuda"] = [int(s.size) for s in states]
            for i, s in enumerate(states):
                arrays[f"runtime/torch_cuda_{i}"] = s
    return glob, arrays


def restore(glob: dict, arrays: dict[str, np.ndarray], numpy_generators: dict | None = None) -> None:
    """Put the recorded global states back (Python, legacy NumPy, torch CPU/CUDA, named Generators)."""
    try:
        pr = glob["python_random"]
        random.setstate((pr["version"], tuple(pr["state"]), pr["gauss_next"]))
        nl = glob["numpy_legacy"]
        np.random.set_state((nl["bit_generator"], arrays["runtime/numpy_legacy_key"], nl["pos"],
                             nl["has_gauss"], nl["cached_gaussian"]))
        for name, gen in (numpy_generators or {}).items():
            gen.bit_generator.state = glob["numpy_generators"][name]
        if glob.get("torch_cpu"):
            import torch

            torch.set_rng_state(torch.from_numpy(arrays["runtime/torch_cpu"].copy()))
            if glob.get("torch_cuda"):
                if not torch.cuda.is_available():
                    raise SnapshotError("the snapshot holds CUDA RNG states but CUDA is not available here")
                torch.cuda.set_rng_state_all([torch.from_numpy(arrays[f"runtime/torch_cuda_{i}"].copy())
                                              for i in range(len(glob["torch_cuda"]))])
    except SnapshotError:
        raise
    except Exception as exc:  # a state the libraries refuse: OverflowError, RuntimeError, ... (schema-checked first)
        raise SnapshotError(f"cannot restore the global RNG states: {type(exc).__name__}: {str(exc)[:200]}") from None
