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


def capture(numpy_generators: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    version, internal, gauss_next = random.getstate()
    glob: dict = {"python_random": {"version": version, "state": list(internal), "gauss_next": gauss_next}}
    arrays: dict[str, np.ndarray] = {}
    name, keys, pos, has_gauss, cached = np.random.get_state()
    glob["numpy_legacy"] = {"bit_generator": name, "pos": int(pos), "has_gauss": int(has_gauss),
                            "cached_gaussian": float(cached)}
    arrays["runtime/numpy_legacy_key"] = np.asarray(keys, dtype="<u4")
    # PCG64 and friends hold 128-bit integers: JSON keeps them exact, HDF5 attributes cannot.
    glob["numpy_generators"] = {k: g.bit_generator.state for k, g in (numpy_generators or {}).items()}
    torch = sys.modules.get("torch")
    if torch is not None:
        cpu = torch.get_rng_state().numpy()
        glob["torch_cpu"] = int(cpu.size)
        arrays["runtime/torch_cpu"] = cpu.astype("|u1")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states = [s.numpy().astype("|u1") for s in torch.cuda.get_rng_state_all()]
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
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"cannot restore the global RNG states: {exc!r}") from None
