"""Training configuration: one frozen, validated dataclass with a JSON round-trip, and presets.

Field names follow Fahlman's parameters in snake_case (``OutputEpsilon`` -> ``output_epsilon``)
so the paper and ``cascor1.c`` can be read side by side with a config.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Iterable

from .activations import ACTIVATION_NAMES, CROSS_ENTROPY_OUTPUTS, FANN_POOL_ACTIVATIONS, OUTPUT_ACTIVATION_NAMES
from .errors import ConfigError

CANDIDATE_SCORES = ("covariance", "cascade2")
# The output step for linear outputs when the user did not choose one (estimators, CLI): quickprop
# on linear outputs diverged with the presets' step (1.0, and 0.35 and 0.1 too) on PROBEN1-robot-
# like data (48 correlated inputs) and on scikit-learn's check data; the normalised step is stable.
REGRESSION_OUTPUT_STEP = {"output_step": "normalised", "output_epsilon": 0.5}
# The share held out when early stopping is asked for without a fraction (estimators, CLI).
DEFAULT_VALIDATION_FRACTION = 0.2
# Early stopping "auto" (the estimators; the CLI on the `default` preset): hold out a share from
# this many samples on. Measured with benchmarks/generalisation.py (docs/results.md): a classifier
# that grows until its training set is solved generalises as well as the validated one on small,
# clean sets (iris .987 vs .953, wine .989 vs .977, two-spirals .704 vs .673 with 120-194
# training rows) and far worse from a few hundred noisy rows on (moons .854 vs .909, 3-class
# make_classification .783 vs .855); a regressor never "solves" its data (it grows to ErrorIndex
# 0.2), so it overfits from the start (diabetes, 353 rows: R^2 .06 vs .49).
AUTO_VALIDATION_SAMPLES = {"classification": 300, "regression": 100}
# What the estimators, and the CLI, add to the `default` preset (measured with
# benchmarks/generalisation.py, docs/results.md): an L2 penalty on the output weights
# (breast_cancer .961 -> .972, diabetes R^2 .467 -> .488) and, for classification, cross-entropy
# outputs (a logistic unit for two classes, a softmax for more; log-loss: digits .213 -> .126,
# breast_cancer .161 -> .079, two-spirals 2.74 -> .89). The paper presets keep their settings.
RECOMMENDED = {"classification": {"output_loss": "cross_entropy", "output_l2": 1e-3},
               "regression": {"output_l2": 1e-3}}

# With held-out data a regression's size is chosen on it, so "solved" at ErrorIndex 0.2 (training
# R^2 ~0.96) must not stop growth first: friedman1 R^2 .960 at 0.2, .986 at 0.01.
VALIDATED_ERROR_INDEX_THRESHOLD = 0.01
ERROR_MEASURES = ("bits", "index")
OUTPUT_STEPS = ("patterns", "normalised")
OUTPUT_LOSSES = ("squared", "cross_entropy")


def cross_entropy_output(n_classes: int) -> str:
    """The output activation that cross-entropy trains for ``n_classes`` classes."""
    return "asymmetric_sigmoid" if n_classes == 2 else "softmax"


def recommended(task: str, output_activation: str | None = None) -> dict:
    """:data:`RECOMMENDED` for ``task`` ('classification' or 'regression'), given the output
    activation the user chose (None: none). An activation that cross-entropy does not train keeps
    squared error, so the user's choice is never silently paired with a loss it cannot take. The
    one rule for the estimators' parameters and the CLI's ``--set`` keys."""
    out = dict(RECOMMENDED[task])
    if output_activation is not None and output_activation not in CROSS_ENTROPY_OUTPUTS:
        out.pop("output_loss", None)
    return out


@dataclass(frozen=True)
class CascorConfig:
    """Every knob of a Cascade-Correlation run. Defaults are ``cascor1.c``'s."""

    # Output phase (quickprop on the output weights).
    output_activation: str = "symmetric_sigmoid"
    output_epsilon: float = 0.35
    output_mu: float = 2.0
    output_decay: float = 1e-4
    # An L2 penalty on the output weights per pattern (MLP's alpha): the output phase minimises
    # mean error + output_l2/2 * |w|^2, whatever the number of patterns (output_decay, added to
    # a slope summed over the patterns, fades as the data grow).
    output_l2: float = 0.0
    output_patience: int = 8
    output_change_threshold: float = 0.01
    output_epochs: int = 100
    # How output_epsilon is scaled: "patterns" divides it by the number of patterns (cascor1.c);
    # "normalised" by the summed squared values the outputs read (normalised LMS), which bounds
    # the linear step whatever the inputs' scale: linear outputs diverge without it.
    output_step: str = "patterns"
    # What the output phase minimises: squared error (cascor1.c), or cross-entropy for
    # asymmetric_sigmoid (binary) / softmax (multi-class) outputs: calibrated probabilities; the
    # residual the candidates correlate with is then out - target.
    output_loss: str = "squared"
    # Candidate phase (quickprop ascent on the candidates' input weights).
    candidate_score: str = "covariance"
    candidate_activations: tuple[str, ...] = ("symmetric_sigmoid",)
    candidate_steepnesses: tuple[float, ...] = (1.0,)
    pool_size: int = 8
    # Candidates are computed in blocks of this many rows: the unit of work that the parallel
    # backends distribute. Results depend on it (not on the backend), so it is part of the config.
    candidate_block: int = 32
    # Format 1.6: each candidate phase trains on a random subset of this many training rows (0:
    # every row). Drawn per unit from stream (6, unit) of the seed, so a resumed run draws the
    # same rows; the output phase and the held-out scores use every row. On large data a
    # candidate epoch is arithmetic over the rows: 32,768 of 64,000 rows took 0.38-0.53 of the
    # time on three 100k-row sets, at 0.1-0.9 points of accuracy (docs/results.md, "Session 18").
    candidate_rows: int = 0
    input_epsilon: float = 1.0
    input_mu: float = 2.0
    input_decay: float = 0.0
    # Format 1.4: an L2 penalty on the candidates' input weights whose strength does not depend
    # on the residual's scale: the covariance slope is normalised by the residual's summed
    # squares, so it grows as the residual shrinks, and a fixed input_decay is strong on noisy
    # data and weak on well-fit data. The decay applied is input_l2 / RMS(residual) (covariance
    # candidates only).
    input_l2: float = 0.0
    input_patience: int = 8
    input_change_threshold: float = 0.03
    input_epochs: int = 100
    # Network growth and initialisation.
    max_units: int = 60
    weight_range: float = 1.0
    weight_multiplier: float = 1.0
    sigmoid_prime_offset: float = 0.1
    # When is the problem solved?
    error_measure: str = "bits"
    score_threshold: float = 0.35
    error_index_threshold: float = 0.2
    # Held-out data (format 1.2): the share of the training data set aside when no separate
    # validation data is given (0: none), and when to stop growing on it.
    validation_fraction: float = 0.0
    n_iter_no_change: int = 5
    tol: float = 1e-4
    # Format 1.3: once the size is chosen on held-out data, train the chosen network's output
    # layer once more on all the data, held-out rows included (trainer.refit; the workflow runs
    # it when the run finishes, so a run stopped before then still refits when it is resumed).
    refit: bool = False
    # Root of every random stream the run draws from.
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept lists (from JSON or users) but store tuples so the config stays hashable.
        for name in ("candidate_activations", "candidate_steepnesses"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        _validate(self)

    # -- derived views ----------------------------------------------------------------
    def candidate_plan(self) -> list[tuple[str, float]]:
        """(activation, steepness) of each candidate, grouped by activation.

        Candidates cycle through the activation x steepness combinations; the pool is then
        ordered by activation so each unit type is one contiguous block of rows (one kernel
        call per type, not per candidate).
        """
        combos = [(a, s) for a in self.candidate_activations for s in self.candidate_steepnesses]
        plan = [combos[i % len(combos)] for i in range(self.pool_size)]
        order = {a: i for i, a in enumerate(self.candidate_activations)}
        return sorted(plan, key=lambda c: order[c[0]])

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists); a fresh dict each call, the fields being flat."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys); computed once, the config being frozen."""
        cached = self.__dict__.get("_json")
        if cached is None:
            cached = json.dumps(self.to_dict(), sort_keys=True)
            object.__setattr__(self, "_json", cached)
        return cached

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CascorConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: "
                + ", ".join(sorted(known))
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "CascorConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "CascorConfig":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: "
                + ", ".join(sorted(known))
            )
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: Iterable[str]) -> "CascorConfig":
        """Apply ``key=value`` strings (the CLI's ``--set``), parsed by each field's type."""
        changes: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(self)}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise ConfigError(f"--set expects key=value; got {item!r}")
            if key not in types:
                raise ConfigError(
                    f"unknown config key {key!r}; valid keys: " + ", ".join(sorted(types))
                )
            changes[key] = _parse(key, types[key], raw.strip())
        return self.replace(**changes)


def _parse(key: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "bool":
            value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(raw.lower())
            if value is None:
                raise ValueError(raw)
            return value
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if "tuple[str" in type_name:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if "tuple[float" in type_name:
            return tuple(float(p) for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"the {key!r} parameter cannot be parsed from {raw!r}") from None
    return raw


def _fail(name: str, expected: str, value: Any) -> None:
    raise ConfigError(f"the {name!r} parameter must be {expected}; got {value!r} instead")


def _validate(cfg: CascorConfig) -> None:
    def number(name, *, positive=False, nonneg=False, integer=False, upper=None):
        value = getattr(cfg, name)
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
            _fail(name, "an integer" if integer else "a finite number", value)
        if positive and value <= 0:
            _fail(name, "> 0", value)
        if nonneg and value < 0:
            _fail(name, ">= 0", value)
        if upper is not None and value > upper:
            _fail(name, f"<= {upper}", value)

    for name in ("output_epsilon", "input_epsilon", "output_mu", "input_mu", "weight_range"):
        number(name, positive=True)
    for name in (
        "output_decay",
        "output_l2",
        "input_decay",
        "input_l2",
        "output_change_threshold",
        "input_change_threshold",
        "sigmoid_prime_offset",
        "score_threshold",
        "error_index_threshold",
    ):
        number(name, nonneg=True)
    number("weight_multiplier")
    number("validation_fraction", nonneg=True, upper=0.9)
    number("tol", nonneg=True)
    if cfg.input_l2 and cfg.candidate_score != "covariance":
        _fail("input_l2", "0 with candidate_score='cascade2' (it scales the covariance slope)", cfg.input_l2)
    if not isinstance(cfg.refit, bool):
        _fail("refit", "true or false", cfg.refit)
    for name in ("output_patience", "input_patience", "max_units", "n_iter_no_change"):
        number(name, nonneg=True, integer=True, upper=1_000_000)
    number("candidate_rows", nonneg=True, integer=True, upper=2**40)
    for name in ("output_epochs", "input_epochs", "pool_size", "candidate_block"):
        number(name, positive=True, integer=True, upper=1_000_000)
    number("seed", nonneg=True, integer=True, upper=2**63 - 1)
    if cfg.output_activation not in OUTPUT_ACTIVATION_NAMES:
        _fail("output_activation", "one of " + ", ".join(OUTPUT_ACTIVATION_NAMES), cfg.output_activation)
    if cfg.candidate_score not in CANDIDATE_SCORES:
        _fail("candidate_score", "one of " + ", ".join(CANDIDATE_SCORES), cfg.candidate_score)
    if cfg.output_loss not in OUTPUT_LOSSES:
        _fail("output_loss", "one of " + ", ".join(OUTPUT_LOSSES), cfg.output_loss)
    if cfg.output_loss == "cross_entropy" and cfg.output_activation not in CROSS_ENTROPY_OUTPUTS:
        _fail("output_activation", "asymmetric_sigmoid or softmax with output_loss='cross_entropy'",
              cfg.output_activation)
    if cfg.output_activation == "softmax" and cfg.output_loss != "cross_entropy":
        _fail("output_loss", "'cross_entropy' with softmax outputs", cfg.output_loss)
    if cfg.output_step not in OUTPUT_STEPS:
        _fail("output_step", "one of " + ", ".join(OUTPUT_STEPS), cfg.output_step)
    if cfg.error_measure not in ERROR_MEASURES:
        _fail("error_measure", "one of " + ", ".join(ERROR_MEASURES), cfg.error_measure)
    acts = cfg.candidate_activations
    if not isinstance(acts, tuple) or not acts:
        _fail("candidate_activations", "a non-empty list of activation names", acts)
    for a in acts:
        if a not in ACTIVATION_NAMES:
            _fail("candidate_activations", "names from " + ", ".join(ACTIVATION_NAMES), a)
    if len(set(acts)) != len(acts):
        _fail("candidate_activations", "a list without repeats", acts)
    steep = cfg.candidate_steepnesses
    if not isinstance(steep, tuple) or not steep:
        _fail("candidate_steepnesses", "a non-empty list of positive numbers", steep)
    for s in steep:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            _fail("candidate_steepnesses", "positive finite numbers", steep)


def _fann_cascade2() -> CascorConfig:
    return CascorConfig(
        candidate_score="cascade2",
        candidate_activations=FANN_POOL_ACTIVATIONS,
        candidate_steepnesses=(0.25, 0.5, 0.75, 1.0),
        pool_size=80,
        output_epsilon=1.0,
        output_patience=12,
        output_epochs=150,
        input_epsilon=1.0,
        input_patience=12,
        input_change_threshold=0.01,
        input_epochs=150,
        weight_multiplier=0.4,
        score_threshold=0.4,
        max_units=100,
    )


PRESETS: dict[str, CascorConfig] = {
    # cascor1.c v1.33 INITIALIZE_GLOBALS.
    "cascor1c": CascorConfig(),
    # Fahlman's Lisp recommendation for two-spirals; MaxUnits raised so every seed can finish.
    "fahlman-spirals": CascorConfig(
        output_epsilon=1.0,
        input_epsilon=100.0,
        output_patience=12,
        input_patience=8,
        score_threshold=0.4,
        max_units=100,
    ),
    # FANN 2.2's Cascade 2 defaults: error-minimising candidates, 80 mixed units.
    "fann-cascade2": _fann_cascade2(),
    # Gaussian units for N-bit parity (the paper's parity runs). The TR does not list its
    # parity parameters; these were chosen by a grid search on 2..8 bits, seeds 1-5
    # (docs/results.md also reports held-out seeds).
    "parity": CascorConfig(
        output_epsilon=2.0,
        input_epsilon=20.0,
        output_patience=4,
        input_patience=4,
        candidate_activations=("gaussian",),
        pool_size=8,
        score_threshold=0.4,
    ),
    # For new users: Fahlman's spirals parameters with a mixed pool (sigmoid, Gaussian and
    # periodic units at two steepnesses), which needs about half the units of a sigmoid pool.
    "default": CascorConfig(
        output_epsilon=1.0,
        input_epsilon=100.0,
        output_patience=12,
        candidate_activations=("symmetric_sigmoid", "gaussian", "sin_symmetric", "cos_symmetric"),
        candidate_steepnesses=(0.5, 1.0),
        pool_size=32,
        score_threshold=0.4,
        max_units=100,
    ),
}


# What each field means, for ``cascor config`` and the docs (Fahlman's name in brackets).
FIELD_HELP: dict[str, str] = {
    "output_activation": "activation of the output units",
    "output_epsilon": "output phase quickprop step size, divided by patterns and fan-in [OutputEpsilon]",
    "output_mu": "output phase maximum growth factor of a quickprop step [OutputMu]",
    "output_decay": "output phase weight decay added to each slope [OutputDecay]",
    "output_l2": "L2 penalty on the output weights per pattern (like MLP's alpha; 0: none)",
    "output_patience": "output epochs without a significant error change before the phase ends [OutputPatience]",
    "output_change_threshold": "relative error change that counts as significant [OutputChangeThreshold]",
    "output_epochs": "most epochs of one output phase [OutputEpochs]",
    "output_loss": "squared (cascor1.c) or cross_entropy (asymmetric_sigmoid/softmax outputs: calibrated "
                   "probabilities)",
    "output_step": "patterns (output_epsilon / patterns, cascor1.c) or normalised (/ summed squared values: stable "
                   "for linear outputs)",
    "candidate_score": "covariance (Cascade-Correlation) or cascade2 (error-minimising candidates)",
    "candidate_activations": "activations the candidate pool cycles through (comma-separated)",
    "candidate_steepnesses": "steepnesses the candidate pool cycles through (comma-separated)",
    "pool_size": "candidates trained per unit [NCandidates]",
    "candidate_block": "candidates per block, the unit of parallel work (results depend on it)",
    "candidate_rows": "training rows each candidate phase trains on, a random subset per unit (0: all rows)",
    "input_epsilon": "candidate phase quickprop step size, divided by patterns and fan-in [InputEpsilon]",
    "input_mu": "candidate phase maximum growth factor [InputMu]",
    "input_decay": "candidate phase weight decay [InputDecay]",
    "input_l2": "L2 on the candidates' input weights, relative to the residual's RMS (decay = input_l2 / RMS; "
                "covariance candidates)",
    "input_patience": "candidate epochs without a significant score change before the phase ends [InputPatience]",
    "input_change_threshold": "relative score change that counts as significant [InputChangeThreshold]",
    "input_epochs": "most epochs of one candidate phase [InputEpochs]",
    "max_units": "most hidden units to install [MaxUnits]",
    "weight_range": "initial weights are uniform in [-weight_range, weight_range] [WeightRange]",
    "weight_multiplier": "an installed unit's output weights start at -weight_multiplier x its correlation",
    "sigmoid_prime_offset": "added to the sigmoid derivative so slopes never vanish [SigmoidPrimeOffset]",
    "error_measure": "bits (classification: outputs within score_threshold) or index (regression: ErrorIndex)",
    "score_threshold": "an output counts as right within this distance of its target [ScoreThreshold]",
    "error_index_threshold": "regression is solved below this ErrorIndex [ErrorIndexThreshold]",
    "validation_fraction": "share of the training data held out to choose the network's size (0: none)",
    "n_iter_no_change": "stop growing after this many units without a validation gain of tol (0: never)",
    "tol": "validation score gain (accuracy or R^2) that counts as an improvement",
    "refit": "after choosing the size on held-out rows, train the chosen network's output layer once more on "
             "all rows (held-out ones included)",
    "seed": "root seed of every random stream of the run",
}


def describe(name: str = "default") -> list[dict[str, Any]]:
    """Every field of preset ``name``: its value, type, the library default and what it means."""
    cfg, base = preset(name), CascorConfig()
    out = []
    for f in fields(CascorConfig):
        value, default = getattr(cfg, f.name), getattr(base, f.name)
        out.append({"field": f.name, "type": str(f.type), "value": list(value) if isinstance(value, tuple) else value,
                    "default": list(default) if isinstance(default, tuple) else default,
                    "help": FIELD_HELP.get(f.name, "")})
    return out


def preset(name: str) -> CascorConfig:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}"
        ) from None
