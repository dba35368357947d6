"""The run's random streams: every seed cascor uses is derived from the root seed and a path.

``derived_seed(root, *path)`` is NumPy's SeedSequence hash of ``[root, *path]`` (its first
64-bit word, shifted to 63 bits), so a stream is named, not positioned: nothing is drawn from
a long-lived generator, and the root seed (in the config) with the counters in the state
determines every future draw.

``derived_seeds(root, *prefix, count=n)`` computes the seeds of the paths ``(*prefix, 0)`` to
``(*prefix, n - 1)`` at once: a candidate phase needs one per candidate, and SeedSequence
costs ~55 us a call (two milliseconds per phase for a pool of 32, a tenth of a small fit).
It is the same hash (Melissa O'Neill's seed_seq design as NumPy specifies it: entropy words
mixed into a pool of four 32-bit words, then hashed out) on arrays of words, one column per
path; the tests check it against SeedSequence itself.
"""

from __future__ import annotations

import numpy as np

_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_MASK = 0xFFFFFFFF


def derived_seed(root_seed: int, *path: int) -> int:
    """A well-mixed 63-bit seed for the stream named by ``path`` under the run's root seed."""
    seq = np.random.SeedSequence([int(root_seed), *(int(p) for p in path)])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _words(n: int) -> list[int]:
    """An entropy integer as SeedSequence reads it: little-endian 32-bit words, at least one."""
    if n < 0:
        raise ValueError(f"a seed path holds non-negative integers, not {n}")
    words = [n & _MASK]
    n >>= 32
    while n:
        words.append(n & _MASK)
        n >>= 32
    return words


def _wrap(v):
    """Python ints stand for words shared by every path (cheap scalar arithmetic), uint32
    arrays for words that differ (NumPy wraps them); ints are reduced to 32 bits here."""
    return v & _MASK if isinstance(v, int) else v


def _hashmix(value, hash_const: list):
    value = value ^ hash_const[0]
    hash_const[0] = hash_const[0] * _MULT_A & _MASK
    value = _wrap(value * hash_const[0])
    return value ^ (value >> 16)


def _mix(x, y):
    r = _wrap(_wrap(_MIX_L * x) - _wrap(_MIX_R * y))
    return r ^ (r >> 16)


def derived_seeds(root_seed: int, *prefix: int, count: int) -> list[int]:
    """``[derived_seed(root_seed, *prefix, i) for i in range(count)]``, computed together."""
    if count <= 0:
        return []
    if count > 1 << 32:
        raise ValueError("more than 2**32 derived seeds at once")
    head = [w for part in (int(root_seed), *(int(p) for p in prefix)) for w in _words(part)]
    # Every path's entropy: the common head, then the last integer (one word below 2**32).
    entropy = head + [np.arange(count, dtype=np.uint32)]
    with np.errstate(over="ignore"):
        hash_const = [_INIT_A]
        pool = [_hashmix(entropy[i] if i < len(entropy) else 0, hash_const) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], _hashmix(pool[src], hash_const))
        for src in range(_POOL, len(entropy)):
            for dst in range(_POOL):
                pool[dst] = _mix(pool[dst], _hashmix(entropy[src], hash_const))
        # generate_state(1, uint64): two 32-bit words, low word first.
        words, h = [], _INIT_B
        for i in range(2):
            v = pool[i] ^ h
            h = h * _MULT_B & _MASK
            v = _wrap(v * h)
            words.append(np.broadcast_to(np.asarray(v ^ (v >> 16), dtype=np.uint64), (count,)))
    state = words[0] | (words[1] << np.uint64(32))
    return [int(s) for s in state >> np.uint64(1)]
