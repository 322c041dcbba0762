"""Every Triton kernel compiles for an H100/H200 (sm_90a) through Triton's real launch path
with a stand-in driver and Triton's bundled ptxas, without a GPU, and every config the
autotuner may pick fits the device's shared memory: catches errors of the compiled dialect
that the CPU interpreter lets through, and launches that would fail for lack of resources.

The full sweep (every dtype, d_state 64 and 128, chunk 64 and 128, with and without sinks)
is ``python -m gfssm.kernels.triton_compile_check``; this test runs its two heaviest cases (the second, an H=8 model on a 2^20 window, takes
the chunk-parallel schedule).
"""

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
def test_every_kernel_config_compiles_and_fits_on_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    table = tmp_path / "table.md"
    out = subprocess.run(
        [sys.executable, "-m", "gfssm.kernels.triton_compile_check", "--arch", "90", "--quick",
         "--table", str(table)],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = table.read_text()
    kernels = ("ssd_forward_kernel", "_state_grad_kernel", "ssd_chunk_bwd_dx_kernel",
               "ssd_chunk_bwd_dbc_kernel", "ssd_chunk_cb_kernel", "ssd_step_kernel",
               "_fir_fwd_kernel", "_fir_bwd_dpre_kernel", "_fir_bwd_dx_kernel",
               "_fir_step_kernel", "ssd_chunk_state_kernel", "ssd_state_pass_kernel",
               "ssd_init_slots_kernel")  # fmt: skip
    for name in kernels:
        assert name in text, f"{name} was not compiled:\n{text}"
    for case in ("fp32 N128 Q64 sinks b1 L1048576 H8", "bf16 N128 Q64 sinks"):
        assert case in text, text


TTIR_32 = """
  tt.func public @k(%x_ptr: !tt.ptr<bf16>, %L: i32, %sxl: i32 {tt.divisibility = 16 : i32}) {
    %t = tt.make_range {end = 64 : i32, start = 0 : i32} : tensor<64xi32> loc(#loc1)
    %s = tt.splat %sxl : i32 -> tensor<64xi32> loc(#loc2)
    %e = tt.expand_dims %s {axis = 1 : i32} : tensor<64xi32> -> tensor<64x1xi32> loc(#loc3)
    %t2 = tt.expand_dims %t {axis = 1 : i32} : tensor<64xi32> -> tensor<64x1xi32> loc(#loc3)
    %o = arith.muli %t2, %e : tensor<64x1xi32> loc(#loc4)
"""
TTIR_64 = """
  tt.func public @k(%x_ptr: !tt.ptr<bf16>, %L: i32, %sxl: i32 {tt.divisibility = 16 : i32}) {
    %t = tt.make_range {end = 64 : i32, start = 0 : i32} : tensor<64xi32> loc(#loc1)
    %t64 = arith.extsi %t : tensor<64xi32> to tensor<64xi64> loc(#loc2)
    %w = arith.extsi %sxl : i32 to i64 loc(#loc2)
    %s = tt.splat %w : i64 -> tensor<64xi64> loc(#loc2)
    %o = arith.muli %t64, %s : tensor<64xi64> loc(#loc4)
"""


def test_the_offset_check_flags_32_bit_row_offsets():
    """The resource check reads each kernel's TTIR for ``row * row_stride`` formed in 32
    bits (it overflows past 2^31: L ~ 490k rows of the layer's input projection)."""
    from gfssm.kernels.triton_compile_check import int32_row_offsets

    assert int32_row_offsets(TTIR_32, "k") == ["k: 32-bit offset, row index times sxl"]
    assert int32_row_offsets(TTIR_64, "k") == []
