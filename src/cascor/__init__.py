"""cascor: Cascade-Correlation networks whose training can stop and resume bit-exactly."""

from .config import PRESETS, CascorConfig, preset
from .errors import (
    CascorError,
    ConfigError,
    CorruptSnapshotError,
    DataError,
    IncompatibleSnapshotError,
    SnapshotError,
    StateError,
    UnsafeSnapshotError,
)
from .network import CascadeNetwork
from .state import TrainState, new_state
from .trainer import resume, run, start

__version__ = "0.1.0"

__all__ = [
    "CascadeNetwork",
    "CascorConfig",
    "CascorError",
    "ConfigError",
    "CorruptSnapshotError",
    "DataError",
    "IncompatibleSnapshotError",
    "PRESETS",
    "SnapshotError",
    "StateError",
    "TrainState",
    "UnsafeSnapshotError",
    "__version__",
    "new_state",
    "preset",
    "resume",
    "run",
    "start",
]
