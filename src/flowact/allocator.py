"""Keep freed memory in the process instead of handing it back to the kernel after every frame.

A frame's big buffers (a 1280x720 float frame is 11 MB; the photo warp's sampling grid 7 MB) are
made and freed once a frame. glibc's malloc serves blocks above its mmap threshold (dynamic, from
128 KB) with fresh mmaps and unmaps them when freed, and trims the heap's free top; a frame then
touches up to thousands of new zeroed pages (0-1,400 minor page faults a 512x512 frame, varying with
glibc's adaptive threshold and the kernel's page sizes). Raising both thresholds once keeps those
blocks on the heap for reuse: measured 2026-12-06 on the AVX2 floor, one thread, 512x512 photo warp
in 8-frame calls 10.5 -> 5.4 ms a frame in one pair of runs, 6.5-6.8 -> 5.5-5.9 ms of CPU in two
later ones; 1280x720 20.9 -> 18.9 ms; peak RSS +16 MB (docs/performance.md). Other C libraries
(musl, macOS): nothing is changed.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for it on 64-bit (larger values are refused)
# glibc trims the heap's whole free top once it reaches this, not just the excess: at 64 MB a decode of one
# toon-128 chunk (8 frames, several 16 MB activations alive at once) freed past it and page-faulted its
# buffers in afresh every chunk (10,000-16,000 minor faults a chunk on a real AVX2-only EPYC; 0 at 256 MB)
TRIM_THRESHOLD = 256 << 20

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Once per process: blocks up to 32 MB come from the heap and the heap keeps up to 256 MB of
    free top. True where glibc took the settings."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux"):
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):  # not glibc
                return False
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            _done = _done and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
