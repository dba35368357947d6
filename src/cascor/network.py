"""The cascade itself: inputs plus bias, frozen hidden units, and the output layer.

Layout of a pattern's *values* row (as in ``cascor1.c``): column 0 is the bias (1.0),
columns 1..I the inputs, then one column per hidden unit in install order. Hidden unit k
reads columns ``0 .. I+k`` (fan-in ``1 + I + k``), and the outputs read every column.
Because a unit never changes once installed, a training run caches these rows and each
epoch costs one layer of work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kernels import get_activation
from .errors import StateError

Tensor = torch.Tensor


@dataclass
class HiddenUnit:
    weights: Tensor  # [fan_in], frozen
    activation: str
    steepness: float


def unit_column(values: Tensor, unit: HiddenUnit) -> Tensor:
    """The unit's value on every pattern, given the value columns it reads. Shape [N].

    Training (install) and inference share this one function so cached and recomputed
    columns are bit-identical.
    """
    net = torch.mv(values, unit.weights.to(values.dtype))  # .to: a no-op in training (float32)
    if unit.steepness != 1.0:
        net.mul_(unit.steepness)
    out = torch.empty_like(net)
    get_activation(unit.activation).forward(net, out)
    return out


class CascadeNetwork:
    """Frozen hidden units plus trainable output weights, with room for ``capacity`` units."""

    def __init__(self, n_inputs: int, n_outputs: int, output_activation: str, capacity: int):
        get_activation(output_activation)  # fail early on an unknown name
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.output_activation = output_activation
        self.capacity = capacity
        self.units: list[HiddenUnit] = []
        self._output_weights = torch.zeros(n_outputs, 1 + n_inputs + capacity)

    @property
    def n_hidden(self) -> int:
        return len(self.units)

    @property
    def fan_in(self) -> int:
        """Columns the outputs read: bias + inputs + hidden units."""
        return 1 + self.n_inputs + len(self.units)

    @property
    def output_weights(self) -> Tensor:
        """View [O, fan_in] of the output weights (in-place updates reach the network)."""
        return self._output_weights[:, : self.fan_in]

    def add_unit(self, unit: HiddenUnit, output_weights: Tensor) -> None:
        if len(self.units) >= self.capacity:
            raise StateError(f"cannot install unit {len(self.units) + 1}: capacity is {self.capacity}")
        expected = self.fan_in
        if tuple(unit.weights.shape) != (expected,):
            raise StateError(
                f"hidden unit {len(self.units)}: expected {expected} input weights, "
                f"found shape {tuple(unit.weights.shape)}"
            )
        self._output_weights[:, self.fan_in] = output_weights
        self.units.append(unit)

    def prefix(self, n_units: int, output_weights: Tensor) -> "CascadeNetwork":
        """The network of the first ``n_units`` units with ``output_weights`` [O, 1 + I + n_units]:
        exactly the network this one was when it had that many units (units never change once
        installed), given the output weights it had then. Shares the frozen unit tensors."""
        if not 0 <= n_units <= len(self.units):
            raise StateError(f"a prefix of {n_units} units of a network with {len(self.units)}")
        net = CascadeNetwork(self.n_inputs, self.n_outputs, self.output_activation, self.capacity)
        net.units = list(self.units[:n_units])
        if tuple(output_weights.shape) != (self.n_outputs, net.fan_in):
            raise StateError(f"prefix output weights: expected shape {(self.n_outputs, net.fan_in)}, "
                             f"found {tuple(output_weights.shape)}")
        net.output_weights.copy_(output_weights)
        return net

    # -- inference -----------------------------------------------------------------
    def values(self, X: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Every pattern's values row [N, fan_in] (bias, inputs, hidden units).

        ``dtype=torch.float64`` evaluates in double precision: the estimators predict that way,
        so a row's prediction does not depend on the batch it came in (float32 matrix kernels
        sum in a batch-size-dependent order; the difference, ~1e-5, is far above float64's)."""
        X = torch.as_tensor(X, dtype=dtype)
        vals = torch.empty(X.shape[0], self.fan_in, dtype=dtype)
        vals[:, 0] = 1.0
        vals[:, 1 : 1 + self.n_inputs] = X
        for k, unit in enumerate(self.units):
            col = 1 + self.n_inputs + k
            vals[:, col] = unit_column(vals[:, :col], unit)
        return vals

    def outputs_from_values(self, values: Tensor) -> Tensor:
        net = values @ self.output_weights.t().to(values.dtype)
        out = torch.empty_like(net)
        get_activation(self.output_activation).forward(net, out)
        return out

    def forward(self, X: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Output activations [N, O]."""
        return self.outputs_from_values(self.values(X, dtype))

    __call__ = forward

    # -- state -----------------------------------------------------------------------
    def state_dict(self, copy: bool = True) -> dict:
        """Tensors are clones, or with ``copy=False`` the live tensors (as ``torch.nn.Module`` does)."""
        c = torch.clone if copy else torch.Tensor.detach
        return {
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "output_activation": self.output_activation,
            "output_weights": c(self.output_weights),
            "units": [
                {"weights": c(u.weights), "activation": u.activation, "steepness": u.steepness}
                for u in self.units
            ],
        }

    @classmethod
    def from_state_dict(cls, state: dict, capacity: int | None = None) -> "CascadeNetwork":
        units = state["units"]
        net = cls(
            int(state["n_inputs"]),
            int(state["n_outputs"]),
            str(state["output_activation"]),
            max(len(units), capacity or 0),
        )
        for k, u in enumerate(units):
            act = str(u["activation"])
            get_activation(act)
            w = torch.as_tensor(u["weights"], dtype=torch.float32)
            if tuple(w.shape) != (net.fan_in,):
                raise StateError(
                    f"hidden unit {k}: expected {net.fan_in} input weights (inputs + bias + {k}), "
                    f"found shape {tuple(w.shape)}"
                )
            net.units.append(HiddenUnit(w.clone(), act, float(u["steepness"])))
        ow = torch.as_tensor(state["output_weights"], dtype=torch.float32)
        if tuple(ow.shape) != (net.n_outputs, net.fan_in):
            raise StateError(
                f"output weights: expected shape {(net.n_outputs, net.fan_in)}, found {tuple(ow.shape)}"
            )
        net.output_weights.copy_(ow)
        return net


def average(networks: list[CascadeNetwork]) -> CascadeNetwork:
    """One cascade whose output net inputs are the mean of ``networks``' (a bagged ensemble,
    averaged before the output activation: the mean prediction of linear outputs, the mean logit
    of a logistic unit, the normalised geometric mean of softmax probabilities).

    Every member's units are installed in turn, each reading the bias, the inputs and its own
    member's earlier units (zero weights on the other members' columns), so the result is an
    ordinary :class:`CascadeNetwork`: it predicts, exports and plots like any other, and each
    unit's column equals its member's. The members must share inputs, outputs and output activation."""
    if not networks:
        raise StateError("averaging needs at least one network")
    first = networks[0]
    for net in networks[1:]:
        if (net.n_inputs, net.n_outputs, net.output_activation) != (first.n_inputs, first.n_outputs,
                                                                   first.output_activation):
            raise StateError("averaged networks must have the same inputs, outputs and output activation")
    total = sum(net.n_hidden for net in networks)
    head = 1 + first.n_inputs
    out = CascadeNetwork(first.n_inputs, first.n_outputs, first.output_activation, total)
    weights = torch.zeros(first.n_outputs, head + total, dtype=torch.float64)
    for net in networks:
        offset = out.n_hidden  # the columns of earlier members' units, which this member never reads
        ow = net.output_weights.to(torch.float64)
        weights[:, :head] += ow[:, :head]
        weights[:, head + offset: head + offset + net.n_hidden] += ow[:, head:]
        for unit in net.units:
            w = torch.cat([unit.weights[:head], torch.zeros(offset, dtype=unit.weights.dtype), unit.weights[head:]])
            out.units.append(HiddenUnit(w, unit.activation, unit.steepness))
    out.output_weights.copy_((weights / len(networks)).to(torch.float32))
    return out
