"""Every Triton kernel compiles for an H100 (sm_90) with Triton's bundled ptxas, without a
GPU: catches errors of the compiled dialect that the CPU interpreter lets through."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Located without importing triton, whose compile-or-interpret mode is fixed at import.
_SPEC = importlib.util.find_spec("triton")
PTXAS = Path(_SPEC.origin).parent / "backends" / "nvidia" / "bin" / "ptxas" if _SPEC else None


@pytest.mark.slow
@pytest.mark.skipif(PTXAS is None or not PTXAS.exists(), reason="no triton with ptxas")
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-m", "gfssm.kernels.triton_compile_check", "--arch", "90"],
        capture_output=True, text=True, env=env, timeout=1200, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": ok") >= 13, out.stdout
