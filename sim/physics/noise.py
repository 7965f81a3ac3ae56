"""Seeded randomness addressed by keys, so a value depends on (seed, keys) and never on call order."""

from __future__ import annotations

import hashlib
import math
import random


def _digest(seed: int, keys: tuple[object, ...]) -> int:
    text = repr((seed, *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def uniform(seed: int, *keys: object) -> float:
    """A uniform number in [0, 1), the same for the same seed and keys in every process."""
    return _digest(seed, keys) / 2.0**64


def normal(seed: int, *keys: object) -> float:
    """A standard normal number (Box–Muller over two keyed uniforms)."""
    u1 = max(uniform(seed, *keys, "n1"), 1e-12)
    u2 = uniform(seed, *keys, "n2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def generator(seed: int, *keys: object) -> random.Random:
    """A private generator for drawing several related numbers (one EV session, one day)."""
    return random.Random(_digest(seed, keys))
