"""Exact schemas for a snapshot's JSON objects and root attributes.

A file's digests prove integrity, not origin: anyone can write a file whose digests are
right. So every value read from a file is checked here against an exact schema before
anything uses it: exact types (an integer is an ``int``, never a bool, a float or a string),
ranges, lengths, known keys only, bounded nesting, no duplicate keys, no lone surrogates.
The reader calls :func:`check_meta`, :func:`check_runtime` and :func:`check_attrs`; the
config is checked by :class:`cascor.config.CascorConfig` itself.
"""

from __future__ import annotations

import json
import math
import re

from ..errors import CorruptSnapshotError

MAX_COUNT = 2**62  # epochs, counters
MAX_UNITS = 1_000_000
MAX_NAME = 64  # activation, status, dataset names
MAX_TEXT = 4096  # paths, labels
MAX_ITEMS = 1_000_000
MAX_DEPTH = 8

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # dataset names
_ACT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # activation names (resolved through a closed registry later)
_VERSION = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")
_CREATED = re.compile(r"^[0-9T:+.-]{1,40}$")
_VERSION_TEXT = re.compile(r"^[ -~]{0,128}$")  # printable ASCII
VERSION_KEYS = ("python", "cascor", "numpy", "torch", "numpy_blas", "torch_blas")


class _Bad(Exception):
    def __init__(self, where: str, expected: str, value):
        self.where, self.expected, self.value = where, expected, value


def _found(value) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return f"the string {ascii(text)}"
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)} item(s)"
    return f"{type(value).__name__} {ascii(value)[:40]}"


def _int(lo: int = 0, hi: int = MAX_COUNT):
    def check(v, where):
        if type(v) is not int or not lo <= v <= hi:
            raise _Bad(where, f"an integer in [{lo}, {hi}]", v)
    return check


def _float(v, where):
    if type(v) not in (float, int):
        raise _Bad(where, "a number", v)


def _finite(v, where):
    if type(v) not in (float, int) or not math.isfinite(v):
        raise _Bad(where, "a finite number", v)


def _bool(v, where):
    if type(v) is not bool:
        raise _Bad(where, "true or false", v)


def _str(pattern: re.Pattern | None = None, maxlen: int = MAX_TEXT):
    def check(v, where):
        if type(v) is not str or len(v) > maxlen or (pattern is not None and not pattern.match(v)):
            raise _Bad(where, f"a string of at most {maxlen} characters" + (f" matching {pattern.pattern}" if pattern else ""), v)
        _text_ok(v, where)
    return check


def _enum(*values):
    def check(v, where):
        if type(v) is not str or v not in values:
            raise _Bad(where, "one of " + ", ".join(values), v)
    return check


def _opt(inner):
    def check(v, where):
        if v is not None:
            inner(v, where)
    return check


def _list(item, maxlen: int = MAX_ITEMS, exact: int | None = None):
    def check(v, where):
        if type(v) is not list or len(v) > maxlen or (exact is not None and len(v) != exact):
            raise _Bad(where, f"a list of {exact if exact is not None else f'at most {maxlen}'} item(s)", v)
        for i, x in enumerate(v):
            item(x, f"{where}[{i}]")
    return check


def _obj(fields: dict, optional: tuple[str, ...] = ()):
    def check(v, where):
        if type(v) is not dict:
            raise _Bad(where, "a JSON object", v)
        missing = sorted(set(fields) - set(v) - set(optional))
        unknown = sorted(set(v) - set(fields))
        if missing:
            raise _Bad(where, "the key(s) " + ", ".join(missing), "them missing")
        if unknown:
            raise _Bad(f"{where}.{unknown[0]}", "no such key (unknown)", v[unknown[0]])
        for key, inner in fields.items():
            if key in v:
                inner(v[key], f"{where}.{key}")
    return check


def _any_json(depth: int = MAX_DEPTH):
    """Any JSON value, bounded: a user's target description may hold labels of any kind."""
    def check(v, where, level=0):
        if level > depth:
            raise _Bad(where, f"at most {depth} levels of nesting", v)
        if isinstance(v, str):
            if len(v) > MAX_TEXT:
                raise _Bad(where, f"a string of at most {MAX_TEXT} characters", v)
            _text_ok(v, where)
        elif isinstance(v, list):
            if len(v) > MAX_ITEMS:
                raise _Bad(where, f"at most {MAX_ITEMS} items", v)
            for i, x in enumerate(v):
                check(x, f"{where}[{i}]", level + 1)
        elif isinstance(v, dict):
            if len(v) > MAX_ITEMS:
                raise _Bad(where, f"at most {MAX_ITEMS} items", v)
            for k, x in v.items():
                _text_ok(k, where)
                check(x, f"{where}.{k}", level + 1)
        elif v is not None and type(v) not in (bool, int, float):
            raise _Bad(where, "a JSON value", v)
    return check


def _text_ok(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(where, "valid Unicode text", "a lone surrogate") from None


_NAMES = _list(_str(_ACT, MAX_NAME), MAX_UNITS)

META = _obj({
    "status": _enum("running", "solved", "max_units", "early_stopped"),
    "n_inputs": _int(1, 1_000_000),
    "n_outputs": _int(1, 100_000),
    "n_patterns": _int(1, 10**10),
    "output_activation": _str(_ACT, MAX_NAME),
    "hidden_activations": _NAMES,
    "phase": _obj({"name": _enum("output", "candidates", "done"), "passes": _int(), "updates": _int(),
                   "first": _bool, "last": _float, "quit": _int()}),
    "counters": _obj({"epoch": _int(), "output_epochs": _int(), "candidate_epochs": _int(), "true_error": _float,
                      "error_bits": _int(-1), "error_index": _float}),
    "pool": _opt(_obj({"activations": _NAMES, "best": _int(0, MAX_UNITS), "best_score": _float})),
    "history_epochs": _int(0, 10**10),
    "history_unit_activations": _NAMES,
    "history_scores": _int(0, MAX_UNITS + 1),
    "targets": _any_json(),
    "data_digest": _str(_HEX64, 64),
    "validation": _opt(_obj({"n_patterns": _int(1, 10**10), "n_total": _int(1, 2 * 10**10),
                             "digest": _str(_HEX64, 64), "split": _bool, "best_n_units": _int(-1, MAX_UNITS),
                             "best_score": _float, "best_loss": _float, "since_best": _int(0, MAX_UNITS + 1)})),
    "input_scaling": _bool,
}, optional=("history_scores", "validation", "input_scaling"))  # check_meta requires them from their version on
META_1_2 = ("history_scores", "validation")
META_SINCE = {"input_scaling": (1, 5)}

_U32 = _int(0, 2**32 - 1)
RUNTIME = _obj({
    "globals": _obj({
        "python_random": _obj({"version": _int(1, 3), "state": _list(_U32, exact=625),
                               "gauss_next": _opt(_finite)}),
        "numpy_legacy": _obj({"bit_generator": _enum("MT19937"), "pos": _int(0, 624), "has_gauss": _int(0, 1),
                              "cached_gaussian": _finite}),
        "numpy_generators": _any_json(4),
        "torch_cpu": _int(1, 1 << 20),
        "torch_cuda": _list(_int(1, 1 << 20), 64),
    }, optional=("torch_cpu", "torch_cuda", "numpy_generators")),
    "backend": _obj({"name": _enum("local", "processes", "dask", "auto"), "workers": _opt(_int(1, 4096)),
                     "scheduler": _opt(_str(maxlen=256))}),
    "data": _opt(_obj({"dataset": _str(_NAME, MAX_NAME), "file": _str(), "target": _opt(_str(maxlen=256))},
                      optional=("dataset", "file", "target"))),
    "versions": _opt(_obj({k: _opt(_str(_VERSION_TEXT, 128)) for k in VERSION_KEYS}, optional=VERSION_KEYS)),
}, optional=("globals", "versions"))  # versions: format 1.1 (a 1.0 file gains it by migration)

ATTRS = _obj({
    "format": _str(maxlen=64),
    "format_version": _str(_VERSION, 16),
    "library_version": _str(re.compile(r"^[0-9A-Za-z.+-]{1,64}$"), 64),
    "run_id": _str(_HEX32, 32),
    "snapshot_counter": _int(),
    "parent_digest": _str(re.compile(r"^([0-9a-f]{64})?$"), 64),
    "created": _str(_CREATED, 40),
    "content_digest": _str(_HEX64, 64),
})


def _run(schema, value, path: str, name: str) -> None:
    try:
        schema(value, name)
    except _Bad as bad:
        raise CorruptSnapshotError(f"{path}: {bad.where}: expected {bad.expected}; found {_found(bad.value)}") from None


def check_meta(meta, path: str, version: tuple[int, int] = (1, 2)) -> None:
    _run(META, meta, path, "meta")
    have = [k for k in META_1_2 if k in meta]
    if version >= (1, 2) and len(have) != len(META_1_2):
        missing = sorted(set(META_1_2) - set(have))
        raise CorruptSnapshotError(f"{path}: meta: expected the key(s) {', '.join(missing)}; found them missing")
    if version < (1, 2) and have:
        raise CorruptSnapshotError(f"{path}: meta.{have[0]}: expected no such key in format "
                                   f"{version[0]}.{version[1]}; found it")
    for key, since in META_SINCE.items():
        if version >= since and key not in meta:
            raise CorruptSnapshotError(f"{path}: meta: expected the key {key}; found it missing")
        if version < since and key in meta:
            raise CorruptSnapshotError(f"{path}: meta.{key}: expected no such key in format "
                                       f"{version[0]}.{version[1]}; found it")


def check_runtime(runtime, path: str) -> None:
    _run(RUNTIME, runtime, path, "runtime/meta")
    data = runtime.get("data")
    if data is not None and ("dataset" in data) == ("file" in data):
        raise CorruptSnapshotError(f"{path}: runtime/meta.data: expected exactly one of 'dataset' or 'file'")


def check_attrs(attrs, path: str) -> None:
    _run(ATTRS, attrs, path, "root attribute")


def parse_version(text) -> tuple[int, int]:
    """A format version 'MAJOR.MINOR' in plain ASCII digits without signs or leading zeros."""
    if type(text) is not str or not _VERSION.match(text):
        raise ValueError(f"not a format version: {ascii(text)[:40]}")
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {ascii(key)[:40]}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads(text: str):
    """Strict JSON: duplicate keys refused; nesting too deep for the parser is a ValueError
    (json raises RecursionError, which must not escape as a crash)."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
