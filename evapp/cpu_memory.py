"""Let the C allocator keep freed memory for reuse (glibc only), set once when a command starts.

Training and clip evaluation on the CPU allocate activations of hundreds of MB per layer. glibc serves every
block above its mmap threshold (dynamic, at most 32 MiB: mallopt(3)) with a fresh mmap and unmaps it on free,
so every layer of every step page-faults the memory the previous layer just gave back. PyTorch's performance
tuning guide recommends a caching allocator (jemalloc, tcmalloc) for this; raising glibc's mmap and trim
thresholds gets the same reuse without preloading a library (measured: docs/decisions.md, allocator).
"""

from __future__ import annotations

import ctypes
import sys

# mallopt(3) parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free heap stays mapped


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit`` bytes; False where the C library has no mallopt or
    refuses the values (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded (find_library would run ldconfig)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
