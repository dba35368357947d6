"""cascor: Cascade-Correlation networks whose training can stop and resume bit-exactly.

The public names are imported lazily so that ``cascor snapshot inspect`` / ``verify`` and
other torch-free tools start fast: importing ``cascor`` itself does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CascorConfig": "config",
    "PRESETS": "config",
    "preset": "config",
    "CascorError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "StateError": "errors",
    "SnapshotError": "errors",
    "CorruptSnapshotError": "errors",
    "IncompatibleSnapshotError": "errors",
    "UnsafeSnapshotError": "errors",
    "CascadeNetwork": "network",
    "TrainState": "state",
    "new_state": "state",
    "start": "trainer",
    "resume": "trainer",
    "run": "trainer",
    "CascorClassifier": "sklearn",
    "CascorRegressor": "sklearn",
    "save": "snapshot",
    "load": "snapshot",
    "verify": "snapshot",
    "export": "exporters",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cascor' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
