"""Give the C allocator's free memory back to the operating system after an evaluation.

glibc's malloc keeps freed blocks for reuse. Evaluation (batches of 32, inference mode) and training
(batches of 16, autograd) allocate blocks of other sizes, so the blocks one phase frees seldom serve
the other and, without a trim, the resident size grows towards the sum of both working sets.

    release()   malloc_trim(0): return the free memory at the heap's top and every free page inside
                it; where the C library has no malloc_trim (not glibc), nothing

oneDNN (torch's CPU matmuls) keeps every primitive it builds, up to 1024, each with its own buffers;
length-grouped batches and length-sorted evaluation make a new shape, so a new primitive, almost
every batch. `limit_primitive_cache()` caps the cache at PRIMITIVE_CACHE (64) unless the user set
ONEDNN_PRIMITIVE_CACHE_CAPACITY; oneDNN reads it when it builds its first primitive, so call it
before the first matmul. Measured in docs/PERFORMANCE.md (peak memory, round two).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

PRIMITIVE_CACHE = 64


@cache
def _trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release() -> bool:
    """Trim the C heap; True when the library has malloc_trim and it gave memory back."""
    trim = _trim()
    return bool(trim(0)) if trim is not None else False


def limit_primitive_cache() -> str:
    """Cap oneDNN's primitive cache (see the module docstring); returns the capacity in force."""
    return os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(PRIMITIVE_CACHE))
