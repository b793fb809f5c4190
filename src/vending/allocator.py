"""The C allocator of a long-running server: fewer heap arenas.

glibc's malloc gives threads that allocate at the same time arenas of their own, up to eight
per core, and keeps each one's freed memory: with a worker thread per held long-poll that is
megabytes of mostly empty heaps (bench/bench_soak.py: 12 arenas and 2.4 MiB more RSS with 5
boards on 2 cores than with two arenas). Threads here mostly wait on sockets and take turns
under the GIL, so they seldom contend for an arena. Only glibc on Linux is touched: elsewhere
(Windows, macOS, musl) this does nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


def _glibc() -> Any:
    try:
        if not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):  # not glibc (musl has no such name)
        return None
    import ctypes

    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap malloc's arenas before any thread starts; True if done. MALLOC_ARENA_MAX, when set
    in the environment (systemd's Environment=, a shell), is the operator's choice and wins."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))

