"""evapp.cpu_memory: a freed block of hundreds of MB stays in the heap for the next allocation."""

import ctypes
import sys

import numpy as np
import pytest

from evapp.cpu_memory import keep_freed_memory


class MallInfo2(ctypes.Structure):  # glibc >= 2.33, mallinfo(3)
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo() -> MallInfo2:
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("the C library has no mallinfo2 (glibc < 2.33 or not glibc)")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_a_freed_large_block_stays_in_the_heap_for_reuse():
    assert keep_freed_memory()
    n = 256 << 20  # far above glibc's default mmap threshold (at most 32 MiB)
    mmapped = mallinfo().hblkhd
    block = np.ones(n, np.uint8)
    assert mallinfo().hblkhd - mmapped < n  # served from the heap, not by its own mmap
    del block
    assert mallinfo().fordblks >= n  # and kept there after free: the next step's activations reuse it
