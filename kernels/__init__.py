"""GFSSM's functional ops: tensors in, tensors out.

Each op has a plain-PyTorch reference (the CPU path) and a Triton implementation (CUDA
tensors; CPU tensors under ``TRITON_INTERPRET=1``, for tests): ``fir/triton.py`` and the
``ssd/triton_*.py`` modules, imported on first use. ``GFSSM_KERNELS`` picks the backend
(see :mod:`gfssm.kernels.dispatch`); ``python -m gfssm.kernels.triton_compile_check``
compiles every kernel and autotune config for a GPU without one and checks its registers,
spills and shared memory (``kernels/README.md``).
"""

from gfssm.kernels.dispatch import KernelBackendError, kernel_mode, select_backend
from gfssm.kernels.fir import fir_step, grouped_fir, tap_mask
from gfssm.kernels.ssd import ssd_scan, ssd_step
from gfssm.kernels.state import ScanState

__all__ = [
    "KernelBackendError",
    "ScanState",
    "fir_step",
    "grouped_fir",
    "kernel_mode",
    "select_backend",
    "ssd_scan",
    "ssd_step",
    "tap_mask",
]
