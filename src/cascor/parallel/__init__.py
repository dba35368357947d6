"""Candidate-pool backends: in-process (default), local processes, and Dask."""

from .backends import BACKENDS, LocalBackend, make_backend
from .dask_cluster import DaskBackend
from .processes import ProcessBackend

__all__ = ["BACKENDS", "DaskBackend", "LocalBackend", "ProcessBackend", "make_backend"]
