"""allocator.keep_freed_memory: frame-sized buffers come from the heap the process keeps (and reuses),
not from a fresh mmap that is unmapped when freed. Checked with glibc's own accounting (mallinfo2:
bytes held in mmapped blocks) in a fresh process, where glibc's adaptive threshold has not moved yet.
(How many page faults that saves varies with the kernel's page sizes and glibc's adaptive threshold:
0-1,400 a 512x512 frame without it, 0 with it; docs/performance.md.)"""

import subprocess
import sys

import pytest

MALLINFO = """
import ctypes, sys, torch
from flowact.allocator import keep_freed_memory

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
"""

PROBE = (
    MALLINFO
    + """
took = keep_freed_memory() if sys.argv[1] == "on" else None
before = libc.mallinfo2().hblkhd
frame = torch.empty(3, 1280, 1280)  # a 19.7 MB float frame
frame.fill_(1.0)
print(took, libc.mallinfo2().hblkhd - before)
"""
)


def mmapped(mode: str) -> tuple[str, int]:
    """(what keep_freed_memory returned, bytes of mmapped blocks a 19.7 MB tensor added)."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    took, grown = out.split()
    return took, int(grown)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_frame_buffers_come_from_the_kept_heap():
    took, kept = mmapped("on")
    assert took == "True"  # glibc took the settings
    _, fresh = mmapped("off")
    frame = 3 * 1280 * 1280 * 4
    assert fresh >= frame  # glibc's default: its own mmap, unmapped again when freed
    assert kept == 0  # with the settings: from the heap, kept for the next frame


TRIM_PROBE = (
    MALLINFO
    + """
keep_freed_memory()
alive = [torch.ones(4, 1024, 1024) for _ in range(8)]  # a decode's activations: 8 x 16 MB at once
grown = libc.mallinfo2().arena
del alive
print(grown, libc.mallinfo2().arena)
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_chunks_freed_activations_stay_in_the_heap():
    """glibc hands the heap's whole free top back once it reaches the trim threshold: at 64 MB the 128 MB a
    chunk's decode frees went back to the kernel every chunk, and was page-faulted in afresh the next."""
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True).stdout
    grown, after = (int(v) for v in out.split())
    assert grown >= 8 * 16 << 20  # the heap served them
    assert after > grown - (16 << 20)  # and keeps them, freed, for the next chunk (64 MB: it gave back 67 MB)
