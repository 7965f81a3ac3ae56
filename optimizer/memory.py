"""Hand the memory a solve has freed back to the operating system.

A solve allocates some tens of MB for a fraction of a second (the PuLP model, HiGHS's copy of it, the
branch-and-bound search), mostly from the worker thread that runs it. When it is over, glibc keeps the
freed pages in that thread's arena, interleaved with the few allocations that outlive the solve, so it
cannot shrink the arena; the next, slightly larger solve takes fresh pages again. A service that
re-plans every hour then grows by a few MB whenever a solve sets a new high-water mark. `malloc_trim`
returns the free pages of every arena (about 1 ms for a few hundred MB).
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def release_freed_memory() -> bool:
    """Return free heap pages to the system; False where the C library offers no way to (not glibc)."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
