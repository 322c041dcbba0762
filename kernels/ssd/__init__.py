"""The chunked SSD scan with sinks: public entry points, argument checks and dispatch."""

from __future__ import annotations

import math

import torch

from gfssm.kernels.checks import check_shape, check_state
from gfssm.kernels.dispatch import kernel_mode, select_backend
from gfssm.kernels.ssd.cpu_inference import ssd_scan_cpu_inference
from gfssm.kernels.ssd.reference import ssd_scan_reference
from gfssm.kernels.ssd.step import ssd_step_reference
from gfssm.kernels.state import ScanState
from gfssm.kernels.triton_support import has_triton_kernel, load_triton_module

__all__ = ["ScanState", "ssd_scan", "ssd_step"]


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    chunk_size: int = 64,
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
    seq_idx: torch.Tensor | None = None,
    initial_state: ScanState | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ScanState]:
    """GFSSM scan (spec section 3) computed in chunks of ``chunk_size`` (section 5).

    x: (b, L, H, P), dt: (b, L, H), A: (H,) negative, B and C: (b, L, G, N), D: (H,),
    dt_bias: (H,), sink_k: (S, G, N), sink_v: (S, H, P), sink_gain: (H,),
    seq_idx: (b, L) ints (a new sequence starts wherever it changes),
    initial_state: ScanState applied to the first sequence of each row.
    Returns y: (b, L, H, P), or (y, final ScanState) with ``return_final_state``.

    The result does not depend on ``chunk_size``; the Triton kernels (CUDA tensors) use it
    clamped to [16, 64] (at 128 their (Q, Q) tiles no longer fit in registers and spill
    kilobytes per thread: see ``python -m gfssm.kernels.triton_compile_check``); on a GPU it
    trades the backward's state memory (~1/Q) against the (Q, Q) work.
    """
    if x.dim() != 4:
        raise ValueError(f"ssd_scan: x must be (b, L, H, P), got shape {tuple(x.shape)}")
    b, L, H, P = x.shape
    if L == 0:
        raise ValueError("ssd_scan: x has length 0; the scan needs at least one position")
    if B.dim() != 4:
        raise ValueError(f"ssd_scan: B must be (b, L, G, N), got shape {tuple(B.shape)}")
    G, N = B.shape[-2:]
    if H % G:
        raise ValueError(f"ssd_scan: heads H={H} must be a multiple of B/C groups G={G}")
    check_shape("ssd_scan", "dt", dt, (b, L, H))
    check_shape("ssd_scan", "A", A, (H,))
    check_shape("ssd_scan", "B", B, (b, L, G, N))
    check_shape("ssd_scan", "C", C, (b, L, G, N))
    for name, t in (("D", D), ("dt_bias", dt_bias), ("sink_gain", sink_gain)):
        if t is not None:
            check_shape("ssd_scan", name, t, (H,))
    if (sink_k is None) != (sink_v is None):
        raise ValueError("ssd_scan: sink_k and sink_v must be given together")
    if sink_k is not None and sink_v is not None:
        check_shape("ssd_scan", "sink_k", sink_k, (sink_k.shape[0], G, N))
        check_shape("ssd_scan", "sink_v", sink_v, (sink_k.shape[0], H, P))
    if seq_idx is not None:
        check_shape("ssd_scan", "seq_idx", seq_idx, (b, L))
        if seq_idx.is_floating_point():
            raise ValueError("ssd_scan: seq_idx must hold integers")
    if initial_state is not None:
        check_state("ssd_scan", initial_state, (b, H, P, N))
    if A.device.type == "cpu" and bool((A > 0).any()):
        # (Not checked on GPUs, where reading A back would stall the stream.)
        raise ValueError("ssd_scan: A must be <= 0 (decay rates, A = -exp(A_log) - floor)")
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"ssd_scan: chunk_size must be a power of two, got {chunk_size}")
    if n_init < 0:
        raise ValueError(f"ssd_scan: n_init must be >= 0, got {n_init}")
    if not dt_limit[0] <= dt_limit[1]:
        raise ValueError(f"ssd_scan: dt_limit must be (lo, hi) with lo <= hi, got {dt_limit}")

    backend = select_backend(
        f"ssd_scan ({x.dtype})", x.device, has_triton_kernel=has_triton_kernel(x, B, C)
    )
    impl = ssd_scan_reference
    if backend == "triton":
        impl = load_triton_module("ssd.triton_ops").ssd_scan_triton
    elif _cpu_inference_applies(x, seq_idx):
        impl = ssd_scan_cpu_inference
    return impl(
        x,
        dt,
        A,
        B,
        C,
        D,
        dt_bias=dt_bias,
        dt_softplus=dt_softplus,
        dt_limit=dt_limit,
        chunk_size=chunk_size,
        sink_k=sink_k,
        sink_v=sink_v,
        sink_gain=sink_gain,
        n_init=n_init,
        seq_idx=seq_idx,
        initial_state=initial_state,
        return_final_state=return_final_state,
    )


def _cpu_inference_applies(x: torch.Tensor, seq_idx: torch.Tensor | None) -> bool:
    """The CPU inference scan (same math, fewer memory passes) serves unpacked rows on the
    CPU without autograd unless ``GFSSM_KERNELS=reference`` asks for the plain reference."""
    return (
        x.device.type == "cpu"
        and seq_idx is None
        and not torch.is_grad_enabled()
        and kernel_mode() == "auto"
    )


def ssd_step(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    state: ScanState,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
) -> tuple[torch.Tensor, ScanState]:
    """One token for a batch of streams: x (b, H, P), dt (b, H), B and C (b, G, N).

    Returns y (b, H, P) and the advanced ScanState; equals ``ssd_scan`` on length 1.
    """
    if x.dim() != 3:
        raise ValueError(f"ssd_step: x must be (b, H, P), got shape {tuple(x.shape)}")
    b, H, P = x.shape
    G, N = B.shape[-2:]
    check_shape("ssd_step", "dt", dt, (b, H))
    check_shape("ssd_step", "B", B, (b, G, N))
    check_shape("ssd_step", "C", C, (b, G, N))
    check_state("ssd_step", state, (b, H, P, N))
    backend = select_backend(
        f"ssd_step ({x.dtype})", x.device, has_triton_kernel=has_triton_kernel(x, B, C)
    )
    impl = ssd_step_reference
    if backend == "triton":
        impl = load_triton_module("ssd.triton_ops").ssd_step_triton
    return impl(
        x,
        dt,
        A,
        B,
        C,
        D,
        state=state,
        dt_bias=dt_bias,
        dt_softplus=dt_softplus,
        dt_limit=dt_limit,
        sink_k=sink_k,
        sink_v=sink_v,
        sink_gain=sink_gain,
        n_init=n_init,
    )
