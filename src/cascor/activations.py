"""The closed registry of unit activation functions.

Names map to code here and nowhere else: a config or snapshot can only *name* an activation,
never import one, so a hostile file cannot smuggle ``os.system`` in as a unit type.

Each activation writes its value and its derivative into caller-owned buffers (the candidate
pool preallocates them), and takes the derivative from the value where it can, as
``cascor1.c`` does. Steepness is applied by the caller (it scales the net input and the
derivative), so one function serves every steepness of a mixed pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import ConfigError

Tensor = torch.Tensor


@dataclass(frozen=True)
class Activation:
    """A unit type: value and derivative kernels plus the range targets should use."""

    name: str
    forward: Callable[[Tensor, Tensor], None]  # (net, out) -> out[:] = f(net)
    prime: Callable[[Tensor, Tensor, Tensor], None]  # (value, net, out) -> out[:] = f'(net)
    low: float
    high: float
    # Fahlman's SigmoidPrimeOffset is added to the derivative of sigmoid-shaped *outputs*
    # to keep the error signal alive in flat spots; it is meaningless for linear outputs.
    sigmoid_like: bool


def _sym_sigmoid(s, out):
    torch.sigmoid(s, out=out)
    out.sub_(0.5)


def _sym_sigmoid_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(0.25)


def _asym_sigmoid(s, out):
    torch.sigmoid(s, out=out)


def _asym_sigmoid_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(v)


def _tanh(s, out):
    torch.tanh(s, out=out)


def _tanh_prime(v, s, out):
    torch.mul(v, v, out=out)
    out.neg_().add_(1.0)


def _gaussian(s, out):
    torch.mul(s, s, out=out)
    out.mul_(-0.5).exp_()


def _gaussian_prime(v, s, out):
    torch.mul(s, v, out=out)
    out.neg_()


def _gaussian_sym(s, out):
    torch.mul(s, s, out=out)
    out.neg_().exp_().mul_(2.0).sub_(1.0)


def _gaussian_sym_prime(v, s, out):
    torch.add(v, 1.0, out=out)
    out.mul_(s).mul_(-2.0)


def _linear(s, out):
    out.copy_(s)


def _linear_prime(v, s, out):
    out.fill_(1.0)


def _elliot(s, out):
    torch.abs(s, out=out)
    out.add_(1.0).reciprocal_().mul_(s).mul_(0.5).add_(0.5)


def _elliot_prime(v, s, out):
    torch.abs(s, out=out)
    out.add_(1.0).square_().reciprocal_().mul_(0.5)


def _elliot_sym(s, out):
    torch.abs(s, out=out)
    out.add_(1.0).reciprocal_().mul_(s)


def _elliot_sym_prime(v, s, out):
    torch.abs(s, out=out)
    out.add_(1.0).square_().reciprocal_()


def _sin(s, out):
    torch.sin(s, out=out)
    out.mul_(0.5).add_(0.5)


def _sin_prime(v, s, out):
    torch.cos(s, out=out)
    out.mul_(0.5)


def _sin_sym(s, out):
    torch.sin(s, out=out)


def _sin_sym_prime(v, s, out):
    torch.cos(s, out=out)


def _cos(s, out):
    torch.cos(s, out=out)
    out.mul_(0.5).add_(0.5)


def _cos_prime(v, s, out):
    torch.sin(s, out=out)
    out.mul_(-0.5)


def _cos_sym(s, out):
    torch.cos(s, out=out)


def _cos_sym_prime(v, s, out):
    torch.sin(s, out=out)
    out.neg_()


_REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in (
        # cascor1.c SIGMOID: the classic symmetric unit in [-0.5, 0.5].
        Activation("symmetric_sigmoid", _sym_sigmoid, _sym_sigmoid_prime, -0.5, 0.5, True),
        Activation("asymmetric_sigmoid", _asym_sigmoid, _asym_sigmoid_prime, 0.0, 1.0, True),
        Activation("tanh", _tanh, _tanh_prime, -1.0, 1.0, True),
        # cascor1.c GAUSSIAN: exp(-x^2/2) in [0, 1].
        Activation("gaussian", _gaussian, _gaussian_prime, 0.0, 1.0, False),
        Activation("gaussian_symmetric", _gaussian_sym, _gaussian_sym_prime, -1.0, 1.0, False),
        Activation("linear", _linear, _linear_prime, -0.5, 0.5, False),
        # FANN's Elliot and periodic families (used by the Cascade 2 mixed pool).
        Activation("elliot", _elliot, _elliot_prime, 0.0, 1.0, True),
        Activation("elliot_symmetric", _elliot_sym, _elliot_sym_prime, -1.0, 1.0, True),
        Activation("sin", _sin, _sin_prime, 0.0, 1.0, False),
        Activation("sin_symmetric", _sin_sym, _sin_sym_prime, -1.0, 1.0, False),
        Activation("cos", _cos, _cos_prime, 0.0, 1.0, False),
        Activation("cos_symmetric", _cos_sym, _cos_sym_prime, -1.0, 1.0, False),
    )
}

ACTIVATION_NAMES: tuple[str, ...] = tuple(_REGISTRY)
OUTPUT_ACTIVATION_NAMES: tuple[str, ...] = (
    "symmetric_sigmoid",
    "asymmetric_sigmoid",
    "tanh",
    "linear",
)

# FANN's Cascade 2 default pool: these ten functions x steepnesses {0.25, 0.5, 0.75, 1}.
FANN_POOL_ACTIVATIONS: tuple[str, ...] = (
    "asymmetric_sigmoid",
    "tanh",
    "gaussian",
    "gaussian_symmetric",
    "elliot",
    "elliot_symmetric",
    "sin_symmetric",
    "cos_symmetric",
    "sin",
    "cos",
)


def get_activation(name: str) -> Activation:
    """Look a name up in the closed registry; unknown names are a ConfigError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATION_NAMES)}"
        ) from None


def apply(name: str, steepness: float, net: Tensor, value: Tensor) -> None:
    """value[:] = f(steepness * net), for code paths that are not hot (install, predict)."""
    act = get_activation(name)
    act.forward(net * steepness if steepness != 1.0 else net, value)
