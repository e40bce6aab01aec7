"""Consistent hashing for sticky-by-key balancing: weighted rendezvous (HRW) and Maglev.

Both map a request key (e.g. a client address) to a backend so that adding or removing one
backend out of N moves only about 1/N of the keys. Backends are identified by a 64-bit salt
derived from their address, as sozu does, so a backend keeps its keys across re-adds and
across workers. Hashes are 64-bit: blake2b for bytes (C speed, well distributed), then the
splitmix64 finaliser to combine a key with a backend salt.
"""

from __future__ import annotations

import math

# CPython's own BLAKE2, which `hashlib.blake2b` is too (hashlib never takes OpenSSL's): without
# importing hashlib, which loads OpenSSL's libcrypto (3.6 MB of memory) in every worker.
from _blake2 import blake2b
from collections.abc import Sequence
from typing import Final, TypeVar

_MASK = (1 << 64) - 1
_UNIT = 1.0 / 18446744073709551616.0  # 2**-64
T = TypeVar("T")
# Maglev wants a prime table much larger than the backend count (the paper uses M >= 100 N).
# The smaller size keeps a rebuild, done in Python on backend changes, in the milliseconds.
MAGLEV_SMALL_TABLE: Final = 5003
MAGLEV_LARGE_TABLE: Final = 65537
MAGLEV_SMALL_LIMIT: Final = 50


def hash_bytes(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def mix(value: int) -> int:
    """splitmix64's finaliser: a cheap bijective scramble of a 64-bit integer."""
    value &= _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def rendezvous_winner(key_hash: int, candidates: Sequence[tuple[int, int, T]]) -> T:
    """Weighted rendezvous over (salt, weight, item): the highest -w / ln(u) wins.

    u is a per-(key, salt) uniform number in (0, 1). Keys and salts are already blake2b
    output, so a two-multiply scramble (much cheaper than splitmix64 in Python) spreads
    them evenly; the unit tests check the balance.
    """
    best = candidates[0][2]
    best_score = -1.0
    for salt, weight, item in candidates:
        x = ((key_hash ^ salt) * 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 32)) * 0xD6E8FEB86659FD93) & _MASK
        score = -weight / math.log((x + 0.5) * _UNIT)
        if score > best_score:
            best, best_score = item, score
    return best


def maglev_table_size(backend_count: int) -> int:
    return MAGLEV_SMALL_TABLE if backend_count <= MAGLEV_SMALL_LIMIT else MAGLEV_LARGE_TABLE


def build_maglev_table(salts: Sequence[int], weights: Sequence[int], size: int) -> list[int]:
    """A Maglev lookup table of `size` (prime) slots holding backend indexes.

    Each backend walks its own permutation of the slots (offset + j * skip) and claims free
    ones in turn, until it owns a share of the table proportional to its weight.
    """
    count = len(salts)
    if count == 0:
        return []
    offsets = [mix(salt ^ 0x6F6666736574) % size for salt in salts]
    skips = [mix(salt ^ 0x736B69705F5F) % (size - 1) + 1 for salt in salts]
    total = sum(weights)
    targets = [weight * size // total for weight in weights]
    for i in range(size - sum(targets)):  # hand out the rounding remainder
        targets[i % count] += 1
    table = [-1] * size
    probes = [0] * count
    filled = [0] * count
    placed = 0
    while placed < size:
        for b in range(count):
            if filled[b] >= targets[b]:
                continue
            offset, skip, j = offsets[b], skips[b], probes[b]
            slot = (offset + j * skip) % size
            while table[slot] >= 0:
                j += 1
                slot = (offset + j * skip) % size
            table[slot] = b
            probes[b] = j + 1
            filled[b] += 1
            placed += 1
    return table
