"""Helpers for tests that damage or forge snapshot files the way an attacker could."""

import hashlib

import h5py

from cascor.snapshot import format as fmt


def resign(path, fix_digests=True):
    """Recompute (optionally) every dataset digest and the manifest, then the user-block digest."""
    if fix_digests:
        with h5py.File(path, "r+", locking=False) as f:
            digests = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    d = fmt.tensor_digest(obj[()])
                    obj.attrs[fmt.DIGEST_ATTR] = d
                    digests[name] = d

            f.visititems(visit)
            f.attrs["content_digest"] = fmt.content_digest(digests)
    with h5py.File(path, "r", locking=False) as f:
        version = fmt.parse_version(f.attrs["format_version"])
    with open(path, "r+b") as fh:
        fh.seek(fmt.USERBLOCK_SIZE)
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        size = fh.tell()
        fh.seek(0)
        fh.write(fmt.userblock(h.hexdigest(), size, version))


def set_json(path, name, mutate):
    with h5py.File(path, "r+", locking=False) as f:
        doc = fmt.decode_json(f[name][()])
        mutate(doc)
        del f[name]
        f.create_dataset(name, data=fmt.encode_json(doc))


def replace_dataset(path, name, data):
    with h5py.File(path, "r+", locking=False) as f:
        if name in f:
            del f[name]
        f.create_dataset(name, data=data)


def flip_bit(path, offset, bit):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ (1 << bit)]))
