"""Give the C allocator's free memory back to the operating system after an evaluation.

glibc's malloc keeps freed blocks for reuse. Evaluation (batches of 32, inference mode) and training
(batches of 16, autograd) allocate blocks of other sizes, so the blocks one phase frees seldom serve
the other and, without a trim, the resident size grows towards the sum of both working sets.

    release()   malloc_trim(0): return the free memory at the heap's top and every free page inside
                it; where the C library has no malloc_trim (not glibc), nothing
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


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
