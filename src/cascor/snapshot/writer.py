"""Atomic, crash-safe snapshot writes.

The file is built in memory, then written beside the target (same directory, so ``os.replace`` is a rename
on one filesystem), flushed and fsynced, then renamed over the target, and the directory
is fsynced so the rename itself survives a power cut. At every instant the target path
holds either the complete old snapshot or the complete new one; a failure removes the
temp file and re-raises, leaving the old snapshot untouched.

``CASCOR_FAULT_STAGE=<stage>`` makes the process SIGKILL itself at that stage: the fault
tests use it to kill a real writer at each named point.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal

import h5py
import numpy as np

from ..errors import SnapshotError
from . import format as fmt

STAGES = ("temp-created", "half-written", "written", "fsynced", "replaced")
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


def _fault(stage: str) -> None:
    if os.environ.get("CASCOR_FAULT_STAGE") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SWEPT: set[str] = set()


def sweep_temp_files(directory: str) -> list[str]:
    """Remove temp files left by writers that died (their PID no longer runs)."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def build_image(arrays: dict[str, np.ndarray], attrs: dict) -> tuple[bytes, str]:
    """The complete file as bytes (HDF5 built in memory, user block filled in), and its content digest.

    libhdf5 never writes to disk here: a disk that fills up mid-save fails a plain Python
    ``write`` (a clean OSError) instead of failing inside libhdf5 (seen: a segfault).
    """
    digests = {name: fmt.tensor_digest(a) for name, a in arrays.items()}
    content = fmt.content_digest(digests)
    with h5py.File(f"cascor-{secrets.token_hex(8)}.h5", "w", driver="core", backing_store=False,
                   userblock_size=fmt.USERBLOCK_SIZE, locking=False) as f:
        for name, array in arrays.items():
            ds = f.create_dataset(name, data=array)
            ds.attrs[fmt.DIGEST_ATTR] = digests[name]
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["content_digest"] = content
        f.flush()
        # The in-memory image starts at the superblock; the declared user block goes in front.
        body = f.id.get_file_image()
    version = fmt.parse_version(attrs["format_version"])
    size = fmt.USERBLOCK_SIZE + len(body)
    return fmt.userblock(hashlib.sha256(body).hexdigest(), size, version) + body, content


def write_snapshot(path: str, arrays: dict[str, np.ndarray], attrs: dict) -> str:
    """Write ``arrays`` (name -> array, JSON objects included) atomically to ``path``.

    Each dataset carries its SHA-256; the root carries the manifest (content) digest and
    ``attrs``; the 512-byte user block carries the SHA-256 of everything after it.
    Returns the content digest.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise SnapshotError(f"cannot save snapshot {path}: directory {directory} does not exist")
    image, content = build_image(arrays, attrs)
    if directory not in _SWEPT:  # once per directory and process: a listing per save is O(files)
        sweep_temp_files(directory)
        _SWEPT.add(directory)
    atomic_write(path, image)
    return content


def atomic_write(path: str, data: bytes) -> None:
    """Temp file beside ``path``, write, flush, fsync, ``os.replace``, fsync the directory.

    On any failure the temp file is removed and ``path`` keeps its previous content.
    """
    path = os.path.abspath(path)
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            _fault("temp-created")
            fh.write(data[: len(data) // 2])
            _fault("half-written")
            fh.write(data[len(data) // 2 :])
            fh.flush()
            _fault("written")
            os.fsync(fh.fileno())
        _fault("fsynced")
        os.replace(tmp, path)
        _fault("replaced")
        _fsync_dir(directory)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SnapshotError(f"cannot save {path}: {exc.strerror or exc}; the previous file is untouched") from exc
        raise


def atomic_copy(src: str, dst: str) -> None:
    """Copy a finished snapshot to ``dst`` with the same temp + fsync + rename discipline."""
    with open(src, "rb") as fh:
        atomic_write(dst, fh.read())
