"""Test-wide setup. Triton kernels run under the interpreter when no GPU is present; the
variable must be set before any @triton.jit decorator runs, i.e. before flowact_kernels
is imported anywhere in the session."""

import os

try:
    import torch

    _cuda = torch.cuda.is_available()
except Exception:  # noqa: BLE001
    _cuda = False
if not _cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))
