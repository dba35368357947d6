"""Reading a snapshot someone else may have written: verify first, parse later.

Order of checks, each before the next is attempted:
1. size limit from ``os.stat``; the 512-byte user block (magic) and the SHA-256 of every
   byte after it, in pure Python: a damaged file is refused before libhdf5 parses a byte
   of it (libhdf5 has had heap overflows on crafted files);
2. structure, from HDF5 metadata only: every link a hard link (no external or soft links),
   no named datatypes, every dataset contiguous or compact with no filters, no external
   storage, no virtual layout; nothing unexpected, nothing missing;
3. ``format``/``format_version`` (a newer major version is refused with both versions);
4. ``meta`` and ``config`` (size-limited JSON), then the expected dtype and shape of every
   tensor derived from them, and the total size against the limit;
5. only then the data, each dataset's SHA-256 and the manifest digest.

Nothing here imports torch or resolves a name to code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import CorruptSnapshotError, IncompatibleSnapshotError, SnapshotError, UnsafeSnapshotError
from . import format as fmt


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 8 << 30
    max_tensor_bytes: int = 4 << 30
    max_json_bytes: int = 64 << 20


@dataclass
class RawSnapshot:
    path: str
    attrs: dict
    meta: dict
    config: dict
    runtime: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    version: tuple[int, int] = fmt.FORMAT_VERSION


def _check_body_digest(path: str, limits: Limits) -> dict:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {path} does not exist") from None
    if size > limits.max_file_bytes:
        raise UnsafeSnapshotError(f"{path}: file is {size} bytes, over the {limits.max_file_bytes}-byte limit")
    with open(path, "rb") as fh:
        block = fh.read(fmt.USERBLOCK_SIZE)
        try:
            header = fmt.parse_userblock(block)
        except ValueError as exc:
            raise CorruptSnapshotError(f"{path}: {exc}") from None
        except Exception:
            raise CorruptSnapshotError(f"{path}: unreadable snapshot header") from None
        if header["size"] != size:
            raise CorruptSnapshotError(
                f"{path}: file is {size} bytes but its header says {header['size']} (truncated or appended to)"
            )
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != header["sha256"]:
        raise CorruptSnapshotError(
            f"{path}: file body digest mismatch: expected sha256 {header['sha256']}, found {h.hexdigest()}"
        )
    return header


def _walk(path: str, group: h5py.Group, prefix: str, found: dict) -> None:
    for name in group:
        full = f"{prefix}{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise UnsafeSnapshotError(f"{path}: object {full!r} is an external link to {link.filename}:{link.path}; refused")
        if isinstance(link, h5py.SoftLink):
            raise UnsafeSnapshotError(f"{path}: object {full!r} is a soft link to {link.path!r}; refused")
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            _walk(path, obj, full + "/", found)
        elif isinstance(obj, h5py.Dataset):
            _check_dataset(path, full, obj)
            found[full] = obj
        else:
            raise UnsafeSnapshotError(f"{path}: object {full!r} is a {type(obj).__name__}; only groups and datasets are allowed")


def _check_dataset(path: str, name: str, ds: h5py.Dataset) -> None:
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise UnsafeSnapshotError(f"{path}: dataset {name!r} is a virtual dataset; refused")
    if plist.get_external_count() > 0:
        raise UnsafeSnapshotError(f"{path}: dataset {name!r} keeps its data in an external file; refused")
    if plist.get_nfilters() > 0:
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        raise UnsafeSnapshotError(f"{path}: dataset {name!r} uses filters {filters}; cascor writes none; refused")
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
        raise UnsafeSnapshotError(f"{path}: dataset {name!r} has chunked layout; cascor writes contiguous data; refused")


def _dtype_str(ds: h5py.Dataset) -> str:
    return ds.dtype.str


def _read_json(path: str, name: str, ds, limits: Limits):
    if ds.dtype.str != fmt.U1 or ds.ndim != 1:
        raise CorruptSnapshotError(f"{path}: {name!r} must be a 1-D uint8 dataset; found {ds.dtype.str} {ds.shape}")
    if ds.shape[0] > limits.max_json_bytes:
        raise UnsafeSnapshotError(f"{path}: {name!r} is {ds.shape[0]} bytes, over the {limits.max_json_bytes}-byte limit")
    data = ds[()]
    expected = ds.attrs.get(fmt.DIGEST_ATTR)
    found = fmt.tensor_digest(data)
    if expected != found:
        raise CorruptSnapshotError(f"{path}: {name!r} digest mismatch: expected {expected}, found {found}")
    try:
        return fmt.decode_json(data), found
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptSnapshotError(f"{path}: {name!r} is not valid JSON ({exc})") from None


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_snapshot(path: str, limits: Limits = Limits(), *, read_data: bool = True) -> RawSnapshot:
    """Verify and read a snapshot into plain Python/NumPy objects (no network is built)."""
    path = os.fspath(path)
    header = _check_body_digest(path, limits)
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise CorruptSnapshotError(f"{path}: HDF5 cannot open the file ({exc})") from None
    with f:
        found: dict[str, h5py.Dataset] = {}
        _walk(path, f, "", found)
        attrs = {k: _attr(f.attrs[k]) for k in f.attrs}
        unexpected = sorted(set(attrs) - set(fmt.ROOT_ATTRS))
        missing = sorted(set(fmt.ROOT_ATTRS) - set(attrs))
        if missing or unexpected:
            raise CorruptSnapshotError(f"{path}: root attributes missing {missing}, unexpected {unexpected}")
        if attrs["format"] != fmt.FORMAT_NAME:
            raise IncompatibleSnapshotError(f"{path}: format is {attrs['format']!r}, expected {fmt.FORMAT_NAME!r}")
        try:
            version = fmt.parse_version(attrs["format_version"])
        except ValueError:
            raise CorruptSnapshotError(f"{path}: unreadable format_version {attrs['format_version']!r}") from None
        if header["format_version"] != attrs["format_version"]:
            raise CorruptSnapshotError(
                f"{path}: header says format {header['format_version']!r} but the file says {attrs['format_version']!r}"
            )
        if version[0] > fmt.FORMAT_VERSION[0]:
            raise IncompatibleSnapshotError(
                f"{path}: written in snapshot format {fmt.version_string(version)}, this cascor reads up to "
                f"{fmt.version_string()}; upgrade cascor to load it"
            )
        docs, digests = {}, {}
        for name in fmt.JSON_OBJECTS:
            if name not in found:
                raise CorruptSnapshotError(f"{path}: required object {name!r} is missing")
            docs[name], digests[name] = _read_json(path, name, found[name], limits)
            if not isinstance(docs[name], dict):
                raise CorruptSnapshotError(f"{path}: {name!r} must be a JSON object")
        meta, config, runtime = docs["meta"], docs["config"], docs["runtime/meta"]
        try:
            layout = fmt.expected_layout(meta, config, runtime)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSnapshotError(f"{path}: metadata is inconsistent or incomplete ({exc!r})") from None
        names = set(found) - set(fmt.JSON_OBJECTS)
        missing = sorted(set(layout) - names)
        unexpected = sorted(names - set(layout))
        if missing:
            raise CorruptSnapshotError(f"{path}: required object(s) missing: {', '.join(missing)}")
        if unexpected:
            raise CorruptSnapshotError(f"{path}: unexpected object(s): {', '.join(unexpected)}")
        total = 0
        for name, (dtype, shape) in layout.items():
            ds = found[name]
            if _dtype_str(ds) != dtype or tuple(ds.shape) != shape:
                raise CorruptSnapshotError(
                    f"{path}: object {name!r}: expected dtype {dtype} shape {shape}, "
                    f"found dtype {_dtype_str(ds)} shape {tuple(ds.shape)}"
                )
            total += int(np.prod(shape, dtype=np.int64)) * ds.dtype.itemsize
        if total > limits.max_tensor_bytes:
            raise UnsafeSnapshotError(f"{path}: tensors total {total} bytes, over the {limits.max_tensor_bytes}-byte limit")
        raw = RawSnapshot(path, attrs, meta, config, runtime, version=version)
        if not read_data:
            return raw
        for name in layout:
            ds = found[name]
            data = ds[()]
            expected = _attr(ds.attrs.get(fmt.DIGEST_ATTR))
            digest = fmt.tensor_digest(data)
            if digest != expected:
                raise CorruptSnapshotError(f"{path}: object {name!r} digest mismatch: expected {expected}, found {digest}")
            raw.arrays[name] = data
            digests[name] = digest
        content = fmt.content_digest(digests)
        if content != attrs["content_digest"]:
            raise CorruptSnapshotError(
                f"{path}: manifest digest mismatch: expected {attrs['content_digest']}, found {content}"
            )
    return raw
