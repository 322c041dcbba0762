"""Which schedule the Triton scan runs, and the launchers of its chunk-parallel state passes.

Two schedules compute the same scan (spec section 5):

- ``fused``: the sequential kernels of ``triton_scan``; one program per (row, head, block of
  P) walks all chunks carrying the state in registers. Minimum memory traffic (chunk states
  never touch memory in the forward), but only b*H*P/BLOCK_P programs: fine from b*H ~ 128
  on, a few percent of a GPU for an H=8 model on one long window.
- ``chunked``: the chunk-local work in parallel over all chunks (``triton_chunk_state``),
  then a cheap elementwise pass over the chunks per (row, head, block of the state), then
  the output (forward) or the gradients (backward) of every chunk in parallel again. Its
  chunk states cross memory: contributions written and read in fp32, passed states
  written and read in the input dtype (12*P*N bytes per chunk and head at bf16, 6x the
  bytes of x at P=64, N=128, Q=64), which costs less than idle SMs wherever the fused
  schedule cannot fill the GPU.

``schedule`` picks one; ``GFSSM_SSD_SCHEDULE=auto|fused|chunked`` overrides it (tests).
Everything here is launched without reading device values back (no host sync).
"""

from __future__ import annotations

import functools
import os

import torch
import triton

from gfssm.kernels.ssd.triton_chunk_state import (
    ssd_chunk_state_kernel,
    ssd_init_slots_kernel,
    ssd_state_pass_kernel,
)
from gfssm.kernels.triton_support import new_buffer, next_power_of_2

SCHEDULE_ENV = "GFSSM_SSD_SCHEDULE"
SCHEDULES = ("auto", "fused", "chunked")
# The fused kernels' smallest block of P among their autotune configs.
FUSED_MIN_BLOCK_P = 32
# Chunks below which the fused walk is short enough that its launch count (one kernel
# instead of three) wins whatever the fill (an estimate; not yet measured on a GPU).
MIN_CHUNKS = 64


@functools.lru_cache(maxsize=8)
def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; an H100's 132 elsewhere (``meta``
    tensors of the resource check, the interpreter)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 132


def schedule(batch_heads: int, headdim: int, nchunks: int, device: torch.device) -> str:
    """``chunked`` where the fused kernels would run fewer programs than the GPU has SMs
    (b*H*ceil(P/32) < SMs) on a sequence of at least ``MIN_CHUNKS`` chunks, else
    ``fused``; ``GFSSM_SSD_SCHEDULE`` forces one. Pure host arithmetic on shapes."""
    forced = os.environ.get(SCHEDULE_ENV, "auto")
    if forced not in SCHEDULES:
        raise ValueError(f"{SCHEDULE_ENV} must be one of {SCHEDULES}, got {forced!r}")
    if forced != "auto":
        return forced
    programs = batch_heads * -(-headdim // FUSED_MIN_BLOCK_P)
    fills = programs >= sm_count(torch.device(device))
    return "fused" if fills or nchunks < MIN_CHUNKS else "chunked"


def _state_grid(nc: int, rows_heads: int, P: int, N: int):
    def grid(m):
        return (nc, rows_heads, triton.cdiv(P, m["BLOCK_P"]) * triton.cdiv(N, m["BLOCK_N"]))

    return grid


def state_pass(states, dtype, decay, start, final, *, reverse: bool, store: bool):
    """Walk the chunk contributions states (b, H, nc, P, N) fp32 (see
    ``ssd_state_pass_kernel``); returns the passed values in ``dtype`` (in place when it is
    float32) with ``store``, else None."""
    b, H, nc, P, N = states.shape
    out = states
    if store and dtype != torch.float32:
        out = new_buffer(b, H, nc, P, N, device=states.device, dtype=dtype)
    ssd_state_pass_kernel[lambda m: (b * H, triton.cdiv(P * N, m["BLOCK"]))](
        states, out, decay, start if start is not None else final, final, nc, H, P, N,
        nc.bit_length(), REVERSE=reverse, HAS_START=start is not None, STORE=store,
    )  # fmt: skip
    return out if store else None


def chunk_states(x, dt, A, B, dt_bias, seg, S0, *, nc, Q, hpg, lo, hi, softplus, has_seq,
                 dot_prec):  # fmt: skip
    """The state entering every chunk, (b, H, nc, P, N) in x's dtype, the chunk decays
    (2, b, H, nc) fp32 and the state after the row (b, H, P, N) fp32.
    x: (b, L, H, P), dt: (b, L, H), B: (b, L, G, N), S0: (b, H, P, N) fp32 or None."""
    b, L, H, P = x.shape
    N = B.shape[-1]
    states = new_buffer(b, H, nc, P, N, device=x.device, dtype=torch.float32)
    decay = new_buffer(2, b, H, nc, device=x.device, dtype=torch.float32)
    ssd_chunk_state_kernel[_state_grid(nc, b * H, P, N)](
        x, dt, A, B, dt_bias if dt_bias is not None else A, A, seg, states, states, decay,
        b, L, nc, H, hpg, P, N, lo, hi, *x.stride(), *dt.stride(), *B.stride(),
        Q=Q, HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus, HAS_SEQ=has_seq,
        ADJOINT=False, TRACK_GI=False, WRITE_DECAY=True, DOT_PREC=dot_prec,
    )  # fmt: skip
    S_final = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
    states = state_pass(states, x.dtype, decay[0], S0, S_final, reverse=False, store=True)
    return states, decay, S_final


def chunk_grad_states(x, dt, A, B, C, dt_bias, gain, seg, meta, dy, dS_final, decay, slots,
                      *, nc, Q, hpg, lo, hi, softplus, has_seq, dot_prec, track_gi, ni,
                      nslot):  # fmt: skip
    """The adjoint dL/dS at every chunk's end (b, H, nc, P, N) in x's dtype, dL/dS0 and dL/dI0
    (b, H, P, N) fp32; with ``slots`` (the initial-token slots (dx, dDelta, dB) of the
    sequential backward) filled in place. decay: from :func:`chunk_states`."""
    b, L, H, P = x.shape
    N = B.shape[-1]
    dev, f32 = x.device, torch.float32
    grad_states = new_buffer(b, H, nc, P, N, device=dev, dtype=f32)
    gi = new_buffer(b, H, nc, P, N, device=dev, dtype=f32) if track_gi else grad_states
    bias = dt_bias if dt_bias is not None else A
    ssd_chunk_state_kernel[_state_grid(nc, b * H, P, N)](
        dy, dt, A, C, bias, gain if gain is not None else A, seg, grad_states, gi, decay,
        b, L, nc, H, hpg, P, N, lo, hi, *dy.stride(), *dt.stride(), *C.stride(),
        Q=Q, HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus, HAS_SEQ=has_seq,
        ADJOINT=True, TRACK_GI=track_gi, WRITE_DECAY=False, DOT_PREC=dot_prec,
    )  # fmt: skip
    dS0 = new_buffer(b, H, P, N, device=dev, dtype=f32)
    grad_states = state_pass(
        grad_states, x.dtype, decay[0], dS_final, dS0, reverse=True, store=True
    )
    dI0 = new_buffer(b, H, P, N, device=dev, dtype=f32)
    if track_gi:
        gi = state_pass(gi, x.dtype, decay[1], None, dI0, reverse=True, store=slots is not None)
    if slots is not None:
        slot_dx, slot_dd, slot_dB = slots
        ssd_init_slots_kernel[(nc, b * H)](
            x, dt, B, bias, meta, gi, slot_dx, slot_dd, slot_dB,
            L, nc, H, hpg, P, N, lo, hi, nslot, *x.stride(), *dt.stride(), *B.stride(),
            NI=ni, BLOCK_P=next_power_of_2(P, 16), BLOCK_N=next_power_of_2(N, 16),
            HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus, DOT_PREC=dot_prec,
            num_warps=8 if P * N >= 64 * 128 else 4,
        )  # fmt: skip
    return grad_states, dS0, dI0
