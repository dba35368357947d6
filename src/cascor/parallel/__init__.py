"""Candidate-pool backends: in-process (default), local processes, and Dask."""

from .backends import BACKENDS, DaskBackend, LocalBackend, ProcessBackend, make_backend

__all__ = ["BACKENDS", "DaskBackend", "LocalBackend", "ProcessBackend", "make_backend"]
