"""Quickprop (Fahlman 1988) exactly as ``cascor1.c`` QUICKPROP-UPDATE, vectorised.

The rule is elementwise, so one call updates a whole weight matrix: every output weight,
or every weight of every candidate in the pool. The branchy C code is rewritten with the
sign of the previous step so that it stays exact (no products that could underflow):

* linear term ``-eps*s`` when the previous step is zero or points against the slope
  (``sign(d) * s <= 0``);
* momentum ``mu*d`` when the slope has not shrunk enough (``sign(d) * (s - shrink*p) <= 0``),
  otherwise the quadratic jump ``d*s/(p-s)``.

The slots ``delta`` (previous step) and ``prev_slope`` are training state: a snapshot that
lost them would resume with a different trajectory.
"""

from __future__ import annotations

import numpy as np
import torch

from .tree import load_tensors

Tensor = torch.Tensor


def quickprop_update(
    weights: Tensor,
    delta: Tensor,
    prev_slope: Tensor,
    slope: Tensor,
    *,
    epsilon: float,
    mu: float,
    decay: float,
) -> None:
    """One quickprop step, in place on ``weights``, ``delta`` and ``prev_slope``.

    ``slope`` is dE/dw of the quantity being *minimised* (shape of ``weights``); it is
    consumed (overwritten) to save an allocation.

    The elementwise rule runs on NumPy views of the same memory: on the small matrices of a
    pool or an output layer a torch call costs 2-8 us of dispatch and NumPy's 1-3 us, and
    this is a third of an epoch's time on data of a few hundred rows. The results are the
    same to the bit: every operation is one IEEE float32 ``+ - * /``, comparison or select
    (no reductions, no transcendental functions), which both libraries round identically.
    The decay term stays a torch call: ``add_`` with ``alpha`` is a fused multiply-add
    (one rounding), which NumPy's two operations would not reproduce.
    """
    if decay:
        slope.add_(weights, alpha=decay)
    _step(weights.numpy(), delta.numpy(), prev_slope.numpy(), slope.numpy(), epsilon, mu)


def _step(w: np.ndarray, d: np.ndarray, p: np.ndarray, s: np.ndarray, epsilon: float, mu: float) -> None:
    # The two selects of the rule are written as ufuncs with ``where=`` (NumPy's np.where
    # with a scalar operand is several times slower than the arithmetic); each leaves exactly
    # the value np.where would have selected, +0.0 included.
    with np.errstate(all="ignore"):  # the unselected quadratic branch may divide 0 by 0
        sgn = np.sign(d)
        step = np.zeros(s.shape, s.dtype)  # np.zeros_like is Python code, 3x slower
        np.multiply(s, np.float32(-epsilon), out=step, where=sgn * s <= 0)
        grow = d * s
        grow /= p - s
        momentum = sgn * (s - p * np.float32(mu / (1.0 + mu))) <= 0
        np.multiply(d, np.float32(mu), out=grow, where=momentum)
        step += grow
        w += step
    d[...] = step
    p[...] = s


def quickprop_reference(w, d, p, s, epsilon, mu, decay):
    """Scalar transcription of ``cascor1.c`` QUICKPROP_UPDATE, for oracle tests.

    Every intermediate is of ``w``'s type (float32 scalars compute in float, as the C code does,
    under NumPy's old value-based promotion too, where float32 and a Python float give float64).
    Returns the new (weight, delta, prev_slope).
    """
    f = type(w) if isinstance(w, np.floating) else float
    eps, mu, shrink = f(epsilon), f(mu), f(mu / (1.0 + mu))
    s = f(s + f(decay) * w)
    step = f(0.0)
    if d < 0.0:
        if s > 0.0:
            step = f(step - eps * s)
        step = f(step + (mu * d if s >= shrink * p else d * s / (p - s)))
    elif d > 0.0:
        if s < 0.0:
            step = f(step - eps * s)
        step = f(step + (mu * d if s <= shrink * p else d * s / (p - s)))
    else:
        step = f(step - eps * s)
    return f(w + step), step, s


class QuickpropSlots:
    """The per-weight memory of quickprop for one weight matrix, with spare columns.

    Columns beyond ``width`` are preallocated room for weights of units not yet installed,
    so installing a unit never reallocates (and never changes the memory layout the BLAS
    kernels see, which keeps resumed runs bit-identical).
    """

    def __init__(self, rows: int, capacity: int, width: int):
        self.delta = torch.zeros(rows, capacity)
        self.prev_slope = torch.zeros(rows, capacity)
        self.width = width

    def views(self) -> tuple[Tensor, Tensor]:
        return self.delta[:, : self.width], self.prev_slope[:, : self.width]

    def grow(self) -> None:
        """Open one more column (a newly installed unit) with fresh, zero slots."""
        self.delta[:, self.width] = 0.0
        self.prev_slope[:, self.width] = 0.0
        self.width += 1

    def state_dict(self, copy: bool = True) -> dict:
        d, p = self.views()
        return {"delta": d.clone(), "prev_slope": p.clone()} if copy else {"delta": d, "prev_slope": p}

    def load_state_dict(self, state: dict) -> None:
        d, p = self.views()
        load_tensors({"delta": d, "prev_slope": p}, state, "quickprop slots")
