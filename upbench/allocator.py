"""The C allocator's state while rows are timed, the same whatever the process ran before.

torch's CPU tensors come from the C library's malloc. glibc serves a large block from fresh pages of its own
(mmap) until a block that large has been freed once; then it raises that threshold, and trims the heap's free top
above twice it. So a buffer of a few MiB costs page faults on every call until some earlier, larger buffer has
moved the thresholds: an operator timed first in a process measured up to 2x slower than the same operator timed
after another (deconv, C=64 at 32x32: 3.3 ms first, 1.6 ms after a carafe row; 1,500 minor faults a call, then
none), and an operator whose temporaries outgrow the trim threshold paid the faults at every call. Setting both
thresholds ends the adapting: blocks up to glibc's largest mmap threshold (32 MiB) come from the heap, whose top is
kept, as in a long-running training process whose thresholds have risen to their maximum. Larger blocks are
mmapped whatever the history, there as here.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache

from .vocabulary import MIB

# Set to this, the allocator is left as the process found it (to time what a fresh process pays, or an allocator
# put in with LD_PRELOAD on its own terms).
ALLOCATOR_VARIABLE = "UPBENCH_ALLOCATOR"
AS_FOUND = "as-found"
SETTLED = "settled"
MMAP_THRESHOLD = 32 * MIB  # glibc's largest on 64-bit (half its heap size): mallopt refuses more
TRIM_THRESHOLD = 1024 * MIB
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def _glibc() -> tuple[ctypes.CDLL, str] | None:
    """The process's C library and its version, where it is glibc."""
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    return libc, version().decode()


def _preloaded() -> str:
    """' (LD_PRELOAD libjemalloc.so.2)': the libraries put in before the C library's, whose malloc may be the one
    torch calls; '' without any."""
    names = [os.path.basename(path) for path in os.environ.get("LD_PRELOAD", "").replace(":", " ").split()]
    return f" (LD_PRELOAD {', '.join(names)})" if names else ""


@lru_cache(maxsize=None)
def settle_allocator() -> str:
    """Fix glibc's mmap and trim thresholds for the rest of the process (once; before the first timed call), unless
    :data:`ALLOCATOR_VARIABLE` says :data:`AS_FOUND`; return what rows record in their ``allocator`` column:
    'glibc 2.36, mmap threshold 32 MiB, trim threshold 1024 MiB', 'glibc 2.36 as found', or 'not glibc'."""
    wanted = os.environ.get(ALLOCATOR_VARIABLE, SETTLED).strip().lower() or SETTLED
    if wanted not in (SETTLED, AS_FOUND):
        raise ValueError(f"{ALLOCATOR_VARIABLE}={os.environ[ALLOCATOR_VARIABLE]!r}: expected {SETTLED} (the default: "
                         f"the same allocator state for every row) or {AS_FOUND}")
    found = _glibc()
    if found is None:
        return "not glibc" + _preloaded()
    libc, version = found
    if wanted == AS_FOUND:
        return f"glibc {version} as found" + _preloaded()
    for option, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if libc.mallopt(option, value) != 1:
            return f"glibc {version} as found (mallopt refused {value // MIB} MiB)" + _preloaded()
    return (f"glibc {version}, mmap threshold {MMAP_THRESHOLD // MIB} MiB, trim threshold {TRIM_THRESHOLD // MIB} MiB"
            + _preloaded())
