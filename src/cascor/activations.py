"""The closed registry of unit activation names (no torch here: snapshot tools read it).

Names map to code in :mod:`cascor.kernels` and nowhere else: a config or a snapshot can
only *name* an activation, never import one, so a hostile file cannot smuggle
``os.system`` in as a unit type.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class ActivationSpec:
    low: float  # output range, used to encode targets
    high: float
    # Fahlman's SigmoidPrimeOffset is added to the derivative of sigmoid-shaped *outputs*
    # to keep the error signal alive in flat spots; it is meaningless for linear outputs.
    sigmoid_like: bool


ACTIVATION_SPECS: dict[str, ActivationSpec] = {
    # cascor1.c SIGMOID: the classic symmetric unit in [-0.5, 0.5].
    "symmetric_sigmoid": ActivationSpec(-0.5, 0.5, True),
    "asymmetric_sigmoid": ActivationSpec(0.0, 1.0, True),
    "tanh": ActivationSpec(-1.0, 1.0, True),
    # cascor1.c GAUSSIAN: exp(-x^2/2) in [0, 1].
    "gaussian": ActivationSpec(0.0, 1.0, False),
    "gaussian_symmetric": ActivationSpec(-1.0, 1.0, False),
    "linear": ActivationSpec(-0.5, 0.5, False),
    # FANN's Elliot and periodic families (used by the Cascade 2 mixed pool).
    "elliot": ActivationSpec(0.0, 1.0, True),
    "elliot_symmetric": ActivationSpec(-1.0, 1.0, True),
    "sin": ActivationSpec(0.0, 1.0, False),
    "sin_symmetric": ActivationSpec(-1.0, 1.0, False),
    "cos": ActivationSpec(0.0, 1.0, False),
    "cos_symmetric": ActivationSpec(-1.0, 1.0, False),
    # Outputs only: a row-wise softmax (probabilities summing to 1), trained with cross-entropy.
    "softmax": ActivationSpec(0.0, 1.0, False),
}

OUTPUT_ONLY = ("softmax",)
# Names a candidate (hidden) unit may use.
ACTIVATION_NAMES: tuple[str, ...] = tuple(n for n in ACTIVATION_SPECS if n not in OUTPUT_ONLY)
OUTPUT_ACTIVATION_NAMES: tuple[str, ...] = ("symmetric_sigmoid", "asymmetric_sigmoid", "tanh", "linear", "softmax")
# Output activations whose cross-entropy gradient with respect to the net input is out - target.
CROSS_ENTROPY_OUTPUTS: tuple[str, ...] = ("asymmetric_sigmoid", "softmax")

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


def check_activation(name: object) -> str:
    """Return ``name`` if it is registered; otherwise a ConfigError listing the valid names."""
    if not isinstance(name, str) or name not in ACTIVATION_SPECS:
        raise ConfigError(f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATION_NAMES)}")
    return name
