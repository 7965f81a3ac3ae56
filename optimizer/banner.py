"""Keep HiGHS's banner off the process's stdout.

HiGHS prints its banner from C when the first `Highs` object of a process is made, before any option
can turn it off; later ones print nothing. So the first one is made here, with file descriptor 1
pointed at /dev/null for that moment: stdout stays the caller's (`gridctl optimize --json` prints JSON
only). Call it before any solve that goes through HiGHS.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

_banner_lock = threading.Lock()
_banner_silenced = False


def silence_highs_banner() -> None:
    """Make the process's first `Highs` object with stdout pointed at /dev/null (once, thread-safe)."""
    global _banner_silenced
    if _banner_silenced:
        return
    with _banner_lock:
        if _banner_silenced:
            return
        try:
            import highspy
        except ImportError:
            _banner_silenced = True
            return
        sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no stdout at all: nothing to protect
            highspy.Highs()
            _banner_silenced = True
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 1)
                highspy.Highs()
                libc = ctypes.CDLL(None)
                libc.fflush(None)  # what C's stdio still buffers goes to /dev/null too
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _banner_silenced = True
