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

from ..files import NotRegularFile, open_regular
from ..errors import CorruptSnapshotError, IncompatibleSnapshotError, SnapshotError, UnsafeSnapshotError
from . import format as fmt
from . import schema


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
        # A FIFO named like a snapshot must not hang the reader; only regular files pass.
        fd, size = open_regular(path)
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {path} does not exist") from None
    except NotRegularFile:
        raise SnapshotError(f"snapshot {path} is not a regular file") from None
    except OSError as exc:
        raise SnapshotError(f"cannot open snapshot {path}: {exc.strerror or exc}") from None
    try:
        if size > limits.max_file_bytes:
            raise UnsafeSnapshotError(f"{path}: file is {size} bytes, over the {limits.max_file_bytes}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
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
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if h.hexdigest() != header["sha256"]:
        raise CorruptSnapshotError(
            f"{path}: file body digest mismatch: expected sha256 {header['sha256']}, found {h.hexdigest()}"
        )
    header["file_size"] = size
    return header


MAX_OBJECTS = 10_000  # a format 1.x file holds a few dozen
MAX_DEPTH = 3  # 'runtime/torch_cpu' is the deepest name cascor writes


def _walk(path: str, group: h5py.Group, prefix: str, found: dict, depth: int = 0) -> None:
    """Every dataset under ``group``, checked. Bounded in depth and count, so a hard-link cycle
    between groups (a group that contains itself) ends in a refusal, not a recursion error."""
    if depth > MAX_DEPTH:
        raise UnsafeSnapshotError(f"{path}: groups nested deeper than {MAX_DEPTH} levels at {prefix!r} "
                                  "(a link cycle?); refused")
    if len(group.attrs) and prefix:
        raise UnsafeSnapshotError(f"{path}: group {prefix!r} has attributes; cascor writes none; refused")
    for name in group:
        full = f"{prefix}{name}"
        if len(found) >= MAX_OBJECTS:
            raise UnsafeSnapshotError(f"{path}: more than {MAX_OBJECTS} objects; refused")
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise UnsafeSnapshotError(f"{path}: object {full!r} is an external link to {link.filename}:{link.path}; refused")
        if isinstance(link, h5py.SoftLink):
            raise UnsafeSnapshotError(f"{path}: object {full!r} is a soft link to {link.path!r}; refused")
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            _walk(path, obj, full + "/", found, depth + 1)
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
    if ds.id.get_type().committed():
        raise UnsafeSnapshotError(f"{path}: dataset {name!r} uses a named (committed) datatype; cascor writes none; refused")
    extra = sorted(set(ds.attrs) - {fmt.DIGEST_ATTR})
    if extra:
        raise CorruptSnapshotError(f"{path}: dataset {name!r} has unexpected attribute(s) {ascii(extra)[:80]}")
    if ds.dtype.kind not in "fiub" or ds.dtype.itemsize > 8 or ds.ndim > 4:
        raise CorruptSnapshotError(f"{path}: dataset {name!r} has dtype {ds.dtype.str} and {ds.ndim} dimension(s); "
                                   "cascor writes numeric arrays of at most 2 dimensions")
    # Declared sizes are a claim; the storage the file really holds is a fact. A dataset whose
    # data was never written (or lies elsewhere) would make the reader allocate its declared size.
    declared = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if stored != declared:
        raise CorruptSnapshotError(f"{path}: dataset {name!r} declares {declared} bytes but stores {stored}")


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
        return schema.loads(np.asarray(data, dtype=np.uint8).tobytes().decode("utf-8")), found
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptSnapshotError(f"{path}: {name!r} is not valid JSON ({str(exc)[:120]})") from None


def _attr(value):
    """A root attribute as a plain value; anything but a scalar string or integer stays as it
    is for the schema to refuse (an array attribute, a float, ...)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_snapshot(path: str, limits: Limits = Limits(), *, read_data: bool | tuple[str, ...] = True) -> RawSnapshot:
    """Verify and read a snapshot into plain Python/NumPy objects (no network is built).
    ``read_data``: False reads the metadata only; a tuple of names reads just those objects (the
    ones the file holds), each checked against its digest (the file's digest was checked first)."""
    path = os.fspath(path)
    header = _check_body_digest(path, limits)
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise CorruptSnapshotError(f"{path}: HDF5 cannot open the file ({exc})") from None
    with f:
        found: dict[str, h5py.Dataset] = {}
        _walk(path, f, "", found)
        declared = sum(int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize for ds in found.values())
        if declared > header["file_size"]:
            raise CorruptSnapshotError(f"{path}: datasets declare {declared} bytes, more than the file's "
                                       f"{header['file_size']}")
        try:
            attrs = {k: _attr(f.attrs[k]) for k in f.attrs}
        except (OSError, TypeError, ValueError) as exc:
            raise CorruptSnapshotError(f"{path}: unreadable root attribute ({type(exc).__name__})") from None
        unexpected = sorted(set(attrs) - set(fmt.ROOT_ATTRS))
        missing = sorted(set(fmt.ROOT_ATTRS) - set(attrs))
        if missing or unexpected:
            raise CorruptSnapshotError(f"{path}: root attributes missing {missing}, unexpected {ascii(unexpected)[:200]}")
        schema.check_attrs(attrs, path)
        if attrs["format"] != fmt.FORMAT_NAME:
            raise IncompatibleSnapshotError(f"{path}: format is {ascii(attrs['format'])}, expected {fmt.FORMAT_NAME!r}")
        try:
            version = fmt.parse_version(attrs["format_version"])
        except ValueError:
            raise CorruptSnapshotError(f"{path}: unreadable format_version {ascii(attrs['format_version'])}") from None
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
        schema.check_meta(meta, path, version)
        schema.check_runtime(runtime, path)
        _check_config(config, path, version)
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
        working = fmt.working_bytes(meta, config)
        if working > limits.max_tensor_bytes:
            raise UnsafeSnapshotError(f"{path}: resuming would allocate about {working} bytes (patterns, outputs and "
                                      f"max_units), over the {limits.max_tensor_bytes}-byte limit")
        raw = RawSnapshot(path, attrs, meta, config, runtime, version=version)
        if not read_data:
            return raw
        subset = read_data is not True
        for name in layout:
            if subset and name not in read_data:
                continue
            ds = found[name]
            data = ds[()]
            expected = _attr(ds.attrs.get(fmt.DIGEST_ATTR))
            digest = fmt.tensor_digest(data)
            if digest != expected:
                raise CorruptSnapshotError(f"{path}: object {name!r} digest mismatch: expected {expected}, found {digest}")
            raw.arrays[name] = data
            digests[name] = digest
        content = fmt.content_digest(digests)
        if not subset and content != attrs["content_digest"]:
            raise CorruptSnapshotError(
                f"{path}: manifest digest mismatch: expected {attrs['content_digest']}, found {content}"
            )
    return raw


# Config fields a version introduced: an older file carrying one was not written by cascor.
CONFIG_SINCE = {"refit": (1, 3), "input_l2": (1, 4), "candidate_rows": (1, 6)}


def _check_config(config: dict, path: str, version: tuple[int, int] = fmt.FORMAT_VERSION) -> None:
    """The config through the config's own validation (exact types and ranges, known keys)."""
    from ..config import CascorConfig
    from ..errors import ConfigError

    for key, since in CONFIG_SINCE.items():
        if version < since and key in config:
            raise CorruptSnapshotError(f"{path}: config.{key}: expected no such key in format "
                                       f"{version[0]}.{version[1]}; found it")
    try:
        CascorConfig.from_dict(config)
    except ConfigError as exc:
        raise CorruptSnapshotError(f"{path}: config: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CorruptSnapshotError(f"{path}: config is malformed ({type(exc).__name__})") from None
