"""The activation kernels behind the names in :mod:`cascor.activations`.

Each activation writes its value and its derivative into caller-owned buffers (the candidate
pool preallocates them), and takes the derivative from the value where it can, as
``cascor1.c`` does. Steepness is applied by the caller (it scales the net input and the
derivative), so one function serves every steepness of a mixed pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .activations import ACTIVATION_SPECS, check_activation

Tensor = torch.Tensor

# The kernels' constants as float32 0-dim tensors: an in-place op with a Python number costs
# ~6 us (the number is wrapped in a tensor on every call), with a tensor ~2.5 us, and the
# result is the same (the number is rounded to float32 either way; these are exact in it).
_HALF, _QUARTER, _ONE, _TWO = (torch.tensor(v) for v in (0.5, 0.25, 1.0, 2.0))
_MINUS_HALF, _MINUS_TWO = torch.tensor(-0.5), torch.tensor(-2.0)


@dataclass(frozen=True)
class Activation:
    """A unit type: value and derivative kernels plus the range targets should use."""

    name: str
    forward: Callable[[Tensor, Tensor], None]  # (net, out) -> out[:] = f(net)
    prime: Callable[[Tensor, Tensor, Tensor], None]  # (value, net, out) -> out[:] = f'(net)
    low: float
    high: float
    sigmoid_like: bool


def _sym_sigmoid(s, out):
    torch.sigmoid(s, out=out)
    out.sub_(_HALF)


def _sym_sigmoid_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(_QUARTER)


def _asym_sigmoid(s, out):
    torch.sigmoid(s, out=out)


def _asym_sigmoid_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(v)


def _tanh(s, out):
    torch.tanh(s, out=out)


def _tanh_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(_ONE)


def _gaussian(s, out):
    torch.mul(s, s, out=out)
    out.mul_(_MINUS_HALF).exp_()


def _gaussian_prime(v, s, out):
    torch.mul(s, v, out=out)
    out.neg_()


def _gaussian_sym(s, out):
    torch.mul(s, s, out=out)
    out.neg_().exp_().mul_(_TWO).sub_(_ONE)


def _gaussian_sym_prime(v, s, out):
    torch.add(v, _ONE, out=out)
    out.mul_(s).mul_(_MINUS_TWO)


def _linear(s, out):
    out.copy_(s)


def _linear_prime(v, s, out):
    out.fill_(1.0)


def _elliot(s, out):
    torch.abs(s, out=out)
    out.add_(_ONE).reciprocal_().mul_(s).mul_(_HALF).add_(_HALF)


def _elliot_prime(v, s, out):
    torch.abs(s, out=out)
    out.add_(_ONE).square_().reciprocal_().mul_(_HALF)


def _elliot_sym(s, out):
    torch.abs(s, out=out)
    out.add_(_ONE).reciprocal_().mul_(s)


def _elliot_sym_prime(v, s, out):
    torch.abs(s, out=out)
    out.add_(_ONE).square_().reciprocal_()


def _sin(s, out):
    torch.sin(s, out=out)
    out.mul_(_HALF).add_(_HALF)


def _sin_prime(v, s, out):
    torch.cos(s, out=out)
    out.mul_(_HALF)


def _sin_sym(s, out):
    torch.sin(s, out=out)


def _sin_sym_prime(v, s, out):
    torch.cos(s, out=out)


def _cos(s, out):
    torch.cos(s, out=out)
    out.mul_(_HALF).add_(_HALF)


def _cos_prime(v, s, out):
    torch.sin(s, out=out)
    out.mul_(_MINUS_HALF)


def _cos_sym(s, out):
    torch.cos(s, out=out)


def _cos_sym_prime(v, s, out):
    torch.sin(s, out=out)
    out.neg_()


def _softmax(s, out):
    out.copy_(torch.softmax(s, dim=-1))


def _softmax_prime(v, s, out):
    """The diagonal of the softmax Jacobian, v (1 - v); cross-entropy training never needs it."""
    torch.mul(v, v, out=out)
    out.neg_().add_(v)


_KERNELS = {
    "softmax": (_softmax, _softmax_prime),
    "symmetric_sigmoid": (_sym_sigmoid, _sym_sigmoid_prime),
    "asymmetric_sigmoid": (_asym_sigmoid, _asym_sigmoid_prime),
    "tanh": (_tanh, _tanh_prime),
    "gaussian": (_gaussian, _gaussian_prime),
    "gaussian_symmetric": (_gaussian_sym, _gaussian_sym_prime),
    "linear": (_linear, _linear_prime),
    "elliot": (_elliot, _elliot_prime),
    "elliot_symmetric": (_elliot_sym, _elliot_sym_prime),
    "sin": (_sin, _sin_prime),
    "sin_symmetric": (_sin_sym, _sin_sym_prime),
    "cos": (_cos, _cos_prime),
    "cos_symmetric": (_cos_sym, _cos_sym_prime),
}
assert set(_KERNELS) == set(ACTIVATION_SPECS), "every named activation needs kernels"

_REGISTRY = {
    name: Activation(name, *_KERNELS[name], spec.low, spec.high, spec.sigmoid_like)
    for name, spec in ACTIVATION_SPECS.items()
}


def get_activation(name: str) -> Activation:
    """The kernels of a registered activation; unknown names raise ConfigError."""
    return _REGISTRY[check_activation(name)]
