"""A corpus of hostile snapshot files: each one starts as a real snapshot, is edited the way an
attacker would, and has every digest re-sealed (so integrity checks alone cannot refuse it).

``make_corpus(base_output, base_candidates, directory)`` writes the files and returns
{name: path}. Each name is one class of attack; tests/test_hostile.py asserts every one is
refused cleanly (one line, exit 1, bounded memory, no escapes on the terminal).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import h5py
import numpy as np

from cascor.snapshot import format as fmt


def reseal(path: str, version_text: str | None = None) -> None:
    """Recompute every dataset digest, the manifest and the user block, whatever the file holds."""
    with h5py.File(path, "r+", locking=False) as f:
        digests = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_storage_size() == obj.nbytes and obj.nbytes < 1 << 26:
                d = fmt.tensor_digest(obj[()])
                obj.attrs[fmt.DIGEST_ATTR] = d
                digests[name] = d

        f.visititems(visit)
        f.attrs["content_digest"] = fmt.content_digest(digests)
        if version_text is None:
            version_text = f.attrs["format_version"]
            version_text = version_text.decode() if isinstance(version_text, bytes) else str(version_text)
    with open(path, "r+b") as fh:
        fh.seek(fmt.USERBLOCK_SIZE)
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        size = fh.tell()
        doc = json.dumps({"format_version": version_text, "sha256": h.hexdigest(), "size": size}).encode()
        fh.seek(0)
        fh.write((fmt.MAGIC + doc + b"\n").ljust(fmt.USERBLOCK_SIZE, b"\0"))


def _set_raw_json(f: h5py.File, name: str, text: str | bytes) -> None:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    del f[name]
    f.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))


def _edit_json(f: h5py.File, name: str, mutate) -> None:
    doc = fmt.decode_json(f[name][()])
    mutate(doc)
    _set_raw_json(f, name, json.dumps(doc, sort_keys=True))


def _text(f: h5py.File, name: str) -> str:
    return bytes(f[name][()]).decode()


def make_bases(directory: str) -> tuple[str, str]:
    """Two real snapshots of a CLI-style two-spirals run: right after an install (output phase,
    no pool) and a few epochs into a candidate phase."""
    from cascor import snapshot, trainer, workflow
    from cascor.config import preset

    ds, source = workflow.load_data("two-spirals")
    cfg = preset("fahlman-spirals").replace(seed=1)
    X, Y, info = workflow.targets_for(ds, cfg)
    eng = trainer.start(cfg, X, Y)
    eng.state.targets = info
    trainer.run(eng, callbacks=[lambda e, ev: ev == "installed"])
    output = os.path.join(directory, "output.h5")
    snapshot.save(eng.state, output, data_source=source)
    trainer.run(eng, callbacks=[lambda e, ev: e.state.phase.name == "candidates" and e.state.phase.passes > 3])
    candidates = os.path.join(directory, "candidates.h5")
    snapshot.save(eng.state, candidates, data_source=source)
    return output, candidates


def make_corpus(base_output: str, base_candidates: str, directory: str) -> dict[str, str]:
    """Write one hostile file per attack class; returns {class name: path}."""
    os.makedirs(directory, exist_ok=True)
    corpus: dict[str, str] = {}

    def variant(name, edit, base=base_output, version_text=None):
        path = os.path.join(directory, f"{name}.h5")
        shutil.copy(base, path)
        with h5py.File(path, "r+", locking=False) as f:
            edit(f)
        reseal(path, version_text)
        corpus[name] = path

    def meta(mutate, name="meta"):
        return lambda f: _edit_json(f, name, mutate)

    def raw(name, transform):
        return lambda f: _set_raw_json(f, name, transform(_text(f, name)))

    # Structure.
    variant("hardlink-cycle", lambda f: f["network"].__setitem__("loop", f["network"]))
    for obj in ("meta", "config", "runtime/meta"):
        variant(f"deep-json-{obj.replace('/', '-')}", lambda f, o=obj: _set_raw_json(f, o, "[" * 100_000 + "]" * 100_000))

    def unallocated(f, n=750_000_000):
        m = fmt.decode_json(f["meta"][()])
        m["n_patterns"] = n
        _set_raw_json(f, "meta", json.dumps(m, sort_keys=True))
        for key in ("residual/errors", "residual/diffs"):
            del f[key]
            f.create_dataset(key, shape=(n, m["n_outputs"]), dtype="<f4")  # declared, never written
    variant("unallocated-3gb", unallocated)

    def named_type(f):
        f["float_type"] = np.dtype("<f4")
        data = f["network/output_weights"][()]
        del f["network/output_weights"]
        f.create_dataset("network/output_weights", data=data, dtype=f["float_type"])
        del f["float_type"]  # the committed type stays, reachable only through the dataset
    variant("named-datatype-unlinked", named_type)
    variant("dataset-extra-attribute", lambda f: f["network/output_weights"].attrs.__setitem__("note", 1))
    variant("group-attribute", lambda f: f["network"].attrs.__setitem__("note", 1))

    # Root attributes.
    variant("format-two-elements", lambda f: f.attrs.__setitem__("format", np.array([b"cascor-snapshot", b"x"])))
    variant("counter-string", lambda f: f.attrs.__setitem__("snapshot_counter", "3"))
    variant("counter-negative", lambda f: f.attrs.__setitem__("snapshot_counter", -1))
    variant("run-id-ansi", lambda f: f.attrs.__setitem__("run_id", "\x1b[31mEVIL\x1b[0m\x1b]0;pwned\x07"))
    for label, text in (("leading-zero", "01.0"), ("plus", "+1.0"), ("arabic-indic", "\u0661.\u0660")):
        variant(f"version-{label}", lambda f, t=text: f.attrs.__setitem__("format_version", t), version_text=text)

    # meta values.
    def counters(key, value):
        return meta(lambda m: m["counters"].__setitem__(key, value))
    variant("int-overflow-1e400", raw("meta", lambda t: t.replace('"epoch": ', '"epoch": 1e400, "x": ', 1)))
    variant("int-infinity", raw("meta", lambda t: t.replace('"epoch": ', '"epoch": Infinity, "x": ', 1)))
    variant("n-inputs-string", meta(lambda m: m.__setitem__("n_inputs", "2")))
    variant("n-inputs-float", meta(lambda m: m.__setitem__("n_inputs", 2.7)))
    variant("n-outputs-bool", meta(lambda m: m.__setitem__("n_outputs", True)))
    variant("epoch-negative", counters("epoch", -5))
    variant("meta-unknown-key", meta(lambda m: m.__setitem__("extra", 1)))
    variant("meta-duplicate-key", raw("meta", lambda t: '{"status": "solved", ' + t[1:]))
    variant("meta-60mb-string", meta(lambda m: m.__setitem__("targets", {"task": "classification",
                                                                          "classes": ["a" * 60_000_000, "b"]})))
    variant("status-ansi", meta(lambda m: m.__setitem__("status", "\x1b]0;pwned\x07running")))
    variant("lone-surrogate", raw("meta", lambda t: t.replace('"classes": [', '"classes": ["\\ud800", ', 1)))

    # Sizes that would make the reader or torch allocate gigabytes.
    def many_outputs(f):
        m = fmt.decode_json(f["meta"][()])
        c = fmt.decode_json(f["config"][()])
        O, P = 1000, m["n_patterns"]
        F = f["network/output_weights"].shape[1]
        m["n_outputs"] = O
        c["max_units"] = 10**6
        _set_raw_json(f, "meta", json.dumps(m, sort_keys=True))
        _set_raw_json(f, "config", json.dumps(c, sort_keys=True))
        for key, shape in (("network/output_weights", (O, F)), ("optimizer/output_delta", (O, F)),
                           ("optimizer/output_prev_slope", (O, F)), ("residual/errors", (P, O)),
                           ("residual/diffs", (P, O))):
            del f[key]
            f.create_dataset(key, data=np.zeros(shape, "<f4"))
    variant("outputs-1000-units-1e6", many_outputs)

    # The runtime section: global RNG states, the backend, the data source.
    def runtime(mutate):
        return meta(mutate, name="runtime/meta")
    variant("rng-state-out-of-range", runtime(lambda r: r["globals"]["python_random"]["state"].__setitem__(0, 2**40)))
    variant("rng-state-wrong-type", runtime(lambda r: r["globals"]["numpy_legacy"].__setitem__("pos", "623")))
    variant("rng-pos-out-of-range", runtime(lambda r: r["globals"]["numpy_legacy"].__setitem__("pos", 9999)))
    variant("backend-unknown", runtime(lambda r: r["backend"].__setitem__("name", "os.system")))
    variant("workers-huge", runtime(lambda r: r["backend"].__setitem__("workers", 10**9)))
    variant("data-both", runtime(lambda r: r.__setitem__("data", {"dataset": "two-spirals", "file": "/etc/passwd"})))
    variant("config-string-int", meta(lambda c: c.__setitem__("max_units", "60"), name="config"))
    variant("config-unknown-key", meta(lambda c: c.__setitem__("__class__", "os.system"), name="config"))
    variant("activation-by-name", meta(lambda m: m.__setitem__("output_activation", "os.system")))

    # The input scaling (format 1.5): a zero scale would turn every prediction into NaN or inf.
    def input_scaling(mean, scale):
        def edit(f):
            _edit_json(f, "meta", lambda m: m.__setitem__("input_scaling", True))
            f.create_dataset("inputs/mean", data=np.asarray(mean, dtype="<f8"))
            f.create_dataset("inputs/scale", data=np.asarray(scale, dtype="<f8"))
        return edit
    variant("input-scale-zero", input_scaling([0.0, 0.0], [1.0, 0.0]))
    variant("input-mean-nan", input_scaling([np.nan, 0.0], [1.0, 1.0]))
    return corpus


def torch_state_wrong_size(base: str, path: str) -> str:
    """A torch CPU RNG state of the wrong size: loads (it is only runtime), refused by restore."""
    shutil.copy(base, path)
    with h5py.File(path, "r+", locking=False) as f:
        _edit_json(f, "runtime/meta", lambda r: r["globals"].__setitem__("torch_cpu", 3))
        del f["runtime/torch_cpu"]
        f.create_dataset("runtime/torch_cpu", data=np.zeros(3, np.uint8))
    reseal(path)
    return path
