"""The exceptions cascor raises.

One small tree so callers can catch everything cascor-specific with ``CascorError`` and the
CLI can tell a user mistake (print the message, exit non-zero) from a bug (traceback).
Every message names the offending thing, what was expected and what was found.
"""


class CascorError(Exception):
    """Base class of every error cascor raises on purpose."""


class ConfigError(CascorError, ValueError):
    """A configuration value, preset or registry name is invalid."""


class DataError(CascorError, ValueError):
    """Training or evaluation data is unusable (shape, NaN/inf, empty, one class, ...)."""


class StateError(CascorError, ValueError):
    """A state tree handed to ``load_state_dict`` does not fit the component."""


class SnapshotError(CascorError):
    """A snapshot file cannot be written or read."""


class CorruptSnapshotError(SnapshotError):
    """The file is damaged: truncated, bit-flipped, or a digest does not match."""


class IncompatibleSnapshotError(SnapshotError):
    """The file is intact but written by an incompatible format version or config."""


class UnsafeSnapshotError(SnapshotError):
    """The file uses HDF5 features cascor refuses to follow (links out, external storage, ...)."""


class RunDirectoryError(SnapshotError):
    """A run directory is in use, holds another run, or has nothing to resume from."""


class DivergedError(CascorError):
    """Training produced a non-finite error or score: the step sizes are too large for the data.
    The run stops at that epoch; its last snapshot (if any) is from before."""


class ExportError(CascorError, ValueError):
    """A model cannot be exported as asked (an unsupported pipeline step, a missing package, a
    class label the format cannot hold)."""
