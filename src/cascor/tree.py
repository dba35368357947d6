"""Checked copies of a state tree's tensors into a component's preallocated tensors.

Like ``torch.optim``: check the whole structure first and report every missing or
mis-shaped entry at once, then copy; a failed load leaves the component untouched.
"""

from __future__ import annotations

import torch

from .errors import StateError


def load_tensors(targets: dict[str, torch.Tensor], state: dict, what: str) -> None:
    problems = []
    for name, dst in targets.items():
        src = state.get(name)
        if not isinstance(src, torch.Tensor) or tuple(src.shape) != tuple(dst.shape):
            found = f"shape {tuple(src.shape)}" if isinstance(src, torch.Tensor) else type(src).__name__
            problems.append(f"{name}: expected shape {tuple(dst.shape)}, found {found}")
    if problems:
        raise StateError(f"{what} does not fit: " + "; ".join(problems))
    for name, dst in targets.items():
        dst.copy_(state[name])
