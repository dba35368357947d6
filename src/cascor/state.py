"""TrainState: the one tree that holds everything the next training step reads.

Nothing that influences training lives outside it (the engine's buffers are caches derived
from this tree and the data), so a snapshot is this tree written down and a resume is this
tree read back: no re-seeding, no extra output pass, no rebuilt optimizer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields

import torch

from .candidates import CandidatePool
from .seeds import derived_seed
from .config import CascorConfig
from .errors import StateError
from .history import History
from .inputs import InputScaling
from .network import CascadeNetwork
from .quickprop import QuickpropSlots
from .tree import load_tensors
from .validation import ValidationState

PHASES = ("output", "candidates", "done")
# early_stopped: the validation score stopped improving (n_iter_no_change units); format 1.2.
STATUSES = ("running", "solved", "max_units", "early_stopped")


@dataclass
class PhaseState:
    """Where the phase machine stands; mirrors the locals of cascor1.c's TRAIN_OUTPUTS/TRAIN_INPUTS."""

    name: str = "output"
    passes: int = 0  # epochs run in this phase (the measuring epoch included)
    updates: int = 0  # output: weight updates; candidates: training epochs
    first: bool = True  # no reference error/score recorded yet
    last: float = 0.0  # error or score at the last significant change
    quit: int = 0  # patience deadline (in updates / training epochs)

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict) -> None:
        missing = [f.name for f in fields(self) if f.name not in state]
        if missing:
            raise StateError(f"phase state is missing {', '.join(missing)}")
        if state["name"] not in PHASES:
            raise StateError(f"phase name must be one of {PHASES}; found {state['name']!r}")
        self.name = str(state["name"])
        self.passes, self.updates, self.quit = (int(state[k]) for k in ("passes", "updates", "quit"))
        self.first = bool(state["first"])
        self.last = float(state["last"])


@dataclass
class Counters:
    epoch: int = 0  # output epochs + candidate epochs, as the paper counts
    output_epochs: int = 0
    candidate_epochs: int = 0
    true_error: float = float("nan")  # of the last output pass
    error_bits: int = -1
    error_index: float = float("nan")

    state_dict = PhaseState.state_dict

    def load_state_dict(self, state: dict) -> None:
        for f in fields(self):
            if f.name not in state:
                raise StateError(f"counters are missing {f.name!r}")
            setattr(self, f.name, type(getattr(self, f.name))(state[f.name]))


class TrainState:
    """The whole training state. Create with :func:`new_state` or :meth:`from_state_dict`."""

    def __init__(self, config: CascorConfig, n_inputs: int, n_outputs: int, n_patterns: int, run_id: str):
        self.config = config
        self.run_id = run_id
        self.n_patterns = n_patterns
        self.network = CascadeNetwork(n_inputs, n_outputs, config.output_activation, config.max_units)
        fan_in = self.network.fan_in
        self.output_slots = QuickpropSlots(n_outputs, fan_in + config.max_units, fan_in)
        self.phase = PhaseState(quit=config.output_patience)
        self.pool: CandidatePool | None = None
        # Residual of the latest output pass; the candidate phase correlates with it.
        self.errors = torch.zeros(n_patterns, n_outputs)  # (out - target) * f'(net)
        self.diffs = torch.zeros(n_patterns, n_outputs)  # out - target
        self.counters = Counters()
        self.status = "running"
        self.history = History()
        # What the outputs mean (task, class labels) and a fingerprint of the training data,
        # so a resume on different data is refused instead of silently diverging.
        self.targets: dict = {"task": "regression", "classes": None}
        self.data_digest = ""
        # Held-out data: the split, and the best network seen on it (None: the run has none).
        self.validation: ValidationState | None = None
        # The map from the data's columns to the network's inputs (None: the columns as they are).
        self.input_scaling: InputScaling | None = None

    def new_pool(self) -> CandidatePool:
        cfg = self.config
        return CandidatePool(
            cfg.candidate_plan(),
            self.network.fan_in,
            self.network.n_outputs,
            self.candidate_patterns,
            cascade2=cfg.candidate_score == "cascade2",
            block_size=cfg.candidate_block,
        )

    @property
    def candidate_patterns(self) -> int:
        """Rows a candidate phase trains on: ``config.candidate_rows``, at most every row."""
        m = self.config.candidate_rows
        return min(m, self.n_patterns) if m else self.n_patterns

    @property
    def done(self) -> bool:
        return self.phase.name == "done"

    @property
    def refitted(self) -> bool:
        """A refit run (``trainer.refit``): it chose its size on held-out rows, which it then
        trained on (so it holds no held-out part; its score table keeps the choice)."""
        return (self.config.refit and self.validation is None
                and any(x == x for x in self.history.scores["val_score"]))  # (x == x: not NaN)

    @property
    def best_n_units(self) -> int | None:
        """The size chosen on held-out data so far (None: no held-out data, or none scored yet)."""
        if self.validation is not None:
            return self.validation.best_n_units if self.validation.best_n_units >= 0 else None
        return self.network.n_hidden if self.refitted else None

    def best_network(self) -> CascadeNetwork:
        """The network to use now: the best one seen on held-out data (a prefix of the current
        one with the output weights it had then), or the current one when there is no validation
        or no output phase has ended yet. A finished run has already been rolled back to it."""
        v = self.validation
        if v is None or v.best_weights is None:
            return self.network
        return self.network.prefix(v.best_n_units, v.best_weights)

    def roll_back(self) -> None:
        """Replace the network by :meth:`best_network` (at the end of a run): the units after the
        best are dropped (the history keeps their record) and the output slots start afresh."""
        v = self.validation
        if v is None or v.best_weights is None:
            return
        self.network = self.best_network()
        self.output_slots = QuickpropSlots(self.network.n_outputs, 1 + self.network.n_inputs + self.config.max_units,
                                           self.network.fan_in)

    # -- state tree ------------------------------------------------------------------
    def state_dict(self, copy: bool = True) -> dict:
        """The whole tree. With ``copy=False`` tensors are the live ones, not clones: for a caller
        that reads them at once (a checkpoint copies them into a pipe), never across a step."""
        c = torch.clone if copy else torch.Tensor.detach
        return {
            "config": self.config.to_dict(),
            "run_id": self.run_id,
            "n_patterns": self.n_patterns,
            "status": self.status,
            "network": self.network.state_dict(copy),
            "output_slots": self.output_slots.state_dict(copy),
            "phase": self.phase.state_dict(),
            "counters": self.counters.state_dict(),
            "pool": None if self.pool is None else self.pool.state_dict(copy),
            "errors": c(self.errors),
            "diffs": c(self.diffs),
            "history": self.history.state_dict(),
            "targets": dict(self.targets),
            "data_digest": self.data_digest,
            "validation": None if self.validation is None else self.validation.state_dict(copy),
            "input_scaling": None if self.input_scaling is None else self.input_scaling.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainState":
        try:
            config = CascorConfig.from_dict(dict(state["config"]))
            net_state = state["network"]
            obj = cls(config, int(net_state["n_inputs"]), int(net_state["n_outputs"]),
                      int(state["n_patterns"]), str(state["run_id"]))
            obj.network = CascadeNetwork.from_state_dict(net_state, capacity=config.max_units)
            fan_in = obj.network.fan_in
            obj.output_slots = QuickpropSlots(obj.network.n_outputs, 1 + obj.network.n_inputs + config.max_units, fan_in)
            obj.output_slots.load_state_dict(state["output_slots"])
            obj.phase.load_state_dict(state["phase"])
            obj.counters.load_state_dict(state["counters"])
            if state["status"] not in STATUSES:
                raise StateError(f"status must be one of {STATUSES}; found {state['status']!r}")
            obj.status = str(state["status"])
            load_tensors({"errors": obj.errors, "diffs": obj.diffs}, state, "residual")
            obj.history.load_state_dict(state["history"])
            obj.targets = dict(state["targets"])
            obj.data_digest = str(state["data_digest"])
            if state["validation"] is not None:
                obj.validation = ValidationState.from_state_dict(state["validation"], obj.network.n_inputs,
                                                                 obj.network.n_outputs)
                if obj.validation.best_n_units > obj.network.n_hidden:
                    raise StateError(f"the best network has {obj.validation.best_n_units} units but the run "
                                     f"has {obj.network.n_hidden}")
            if state["input_scaling"] is not None:
                obj.input_scaling = InputScaling.from_state_dict(state["input_scaling"], obj.network.n_inputs)
            if state["pool"] is not None:
                if obj.phase.name != "candidates":
                    raise StateError(f"a candidate pool is present but the phase is {obj.phase.name!r}")
                obj.pool = obj.new_pool()
                obj.pool.load_state_dict(state["pool"])
        except KeyError as exc:
            raise StateError(f"state is missing {exc}") from None
        return obj


def new_state(config: CascorConfig, n_inputs: int, n_outputs: int, n_patterns: int) -> TrainState:
    """A fresh run: no hidden units, output weights uniform in [-range, range) from stream (0,) of the seed."""
    state = TrainState(config, n_inputs, n_outputs, n_patterns, uuid.uuid4().hex)
    gen = torch.Generator()
    gen.manual_seed(derived_seed(config.seed, 0))
    w = state.network.output_weights
    wr = config.weight_range
    w.copy_(torch.rand(w.shape, generator=gen) * (2 * wr) - wr)
    return state
