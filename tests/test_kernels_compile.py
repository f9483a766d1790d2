"""The kernels compile for a real GPU (sm_90) even on a machine without one, and the
attention kernel's bank/chunk loads are software-pipelined into tensor-core MMAs: what
the interpreter-based tests cannot see. Runs the compile check in a subprocess because
this session's kernels were decorated for the interpreter."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton.backends.nvidia")


def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run(
        [sys.executable, "-m", "flowact_kernels.compile_check", "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bank_attention bf16 d128" in r.stdout and "not pipelined" not in r.stdout
