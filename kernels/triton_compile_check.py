"""Compile every Triton kernel of gfssm for a GPU architecture, without a GPU.

Triton's front end and the ``ptxas`` it bundles need no device, so this catches what the
CPU interpreter cannot: type errors of the compiled dialect (branches yielding different
types, dot shapes) and, with ``--verbose``, the registers and spill bytes per kernel.

    python -m gfssm.kernels.triton_compile_check [--arch 90] [--verbose]

Run it in a process where ``TRITON_INTERPRET`` is unset (the kernels must be decorated for
compilation). Exit status 0 when every kernel compiles.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class KernelCase:
    """One kernel with the constexprs to compile it for, and its pointer dtypes."""

    name: str
    kernel: object
    constexprs: dict
    fp32_ptrs: tuple[str, ...] = ()
    int_ptrs: tuple[str, ...] = ()
    float_args: tuple[str, ...] = ("lo", "hi")
    num_warps: int = 4
    options: dict = field(default_factory=dict)


def _signature(fn, case: KernelCase) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in case.constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = (
                "*fp32" if name in case.fp32_ptrs else "*i32" if name in case.int_ptrs else "*bf16"
            )
        else:
            sig[name] = "fp32" if name in case.float_args else "i32"
    return sig


def compile_case(case: KernelCase, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(case.kernel, "fn", case.kernel)
    fn = fn if hasattr(fn, "arg_names") else case.kernel
    src = ASTSource(fn, _signature(fn, case), constexprs=dict(case.constexprs))
    options = {"num_warps": case.num_warps, "num_stages": 1, **case.options}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def registers_and_spills(compiled, arch: int) -> str:
    """``ptxas -v`` on the kernel's PTX: registers and spill bytes."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    suffix = "a" if arch == 90 else ""
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(compiled.asm["ptx"])
    out = subprocess.run(
        [ptxas, "-v", f"--gpu-name=sm_{arch}{suffix}", f.name, "-o", os.devnull],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    os.unlink(f.name)
    regs = re.findall(r"Used (\d+) registers", out.stderr)
    spills = re.findall(r"(\d+) bytes spill stores", out.stderr)
    return f"{max(map(int, regs or [0]))} registers, {max(map(int, spills or [0]))} bytes spilled"


def kernel_cases(chunk: int = 64, headdim: int = 64, dstate: int = 128) -> list[KernelCase]:
    from gfssm.kernels.fir import triton as fir
    from gfssm.kernels.ssd import triton_chunk_bwd, triton_scan, triton_step

    states = ("A_ptr", "D_ptr", "bias_ptr", "sk_ptr", "sv_ptr", "gain_ptr", "S0_ptr", "I0_ptr",
              "S_out_ptr", "states_ptr", "cb_ptr", "grad_states_ptr", "dS_final_ptr",
              "dS0_ptr", "dI0_ptr", "slot_dx_ptr", "slot_dd_ptr", "slot_dB_ptr", "part_ptr",
              "dsv_ptr", "dsk_ptr", "K_ptr", "S_ptr", "I_ptr", "I_out_ptr")  # fmt: skip
    ints = ("seg_ptr", "pos_ptr", "meta_ptr", "seen_ptr", "ks_ptr")
    shapes = dict(Q=chunk, BLOCK_N=dstate, DOT_PREC="tf32")
    on = dict(HAS_BIAS=True, SOFTPLUS=True, HAS_SEQ=True)
    off = dict(HAS_BIAS=False, SOFTPLUS=False, HAS_SEQ=False)
    fwd = dict(NI=16, SP=16, HAS_D=True, HAS_SINK=True, HAS_INIT=True, HAS_S0=True, HAS_I0=True,
               WRITE_Y=True, WRITE_FINAL=True, STORE_STATES=False, STRIDE=1,
               BLOCK_P=32)  # fmt: skip
    recompute = {**fwd, "HAS_D": False, "HAS_SINK": False, "HAS_INIT": False, "HAS_I0": False,
                 "WRITE_Y": False, "WRITE_FINAL": False, "STORE_STATES": True,
                 "STRIDE": 2}  # fmt: skip
    grad = dict(NI=16, TRACK_GI=True, HAS_SLOTS=True, HAS_DSF=True, STRIDE=2, BLOCK_P=32)
    chunk_bwd = dict(NI=16, SP=16, BLOCK_P=headdim, HAS_D=True, HAS_SINK=True, HAS_INIT=True,
                     HAS_I0=True, HAS_SLOTS=True, STRIDE=2)  # fmt: skip
    no_opts = {k: False for k in chunk_bwd if k.startswith("HAS_")}
    fir_on = dict(K=32, HAS_BIAS=True, HAS_SEQ=True, HAS_HIST=True, BLOCK_L=64, BLOCK_C=64)
    kw = dict(fp32_ptrs=states, int_ptrs=ints)
    return [
        KernelCase("chunk C.B^T", triton_scan.ssd_chunk_cb_kernel,
                   dict(Q=chunk, BLOCK_N=dstate, DOT_PREC="tf32"), **kw),
        KernelCase("scan forward", triton_scan.ssd_forward_kernel,
                   {**shapes, **on, **fwd}, num_warps=8, **kw),
        KernelCase("scan forward, no options", triton_scan.ssd_forward_kernel,
                   {**shapes, **off, **fwd, **{k: False for k in fwd if k.startswith("HAS_")}},
                   num_warps=8, **kw),
        KernelCase("state recompute", triton_scan.ssd_forward_kernel,
                   {**shapes, **on, **recompute}, num_warps=8, **kw),
        KernelCase("state gradients", triton_scan.ssd_state_grad_kernel,
                   {**shapes, **on, **grad}, num_warps=8, **kw),
        KernelCase("state gradients, no options", triton_scan.ssd_state_grad_kernel,
                   {**shapes, **off, **grad, "TRACK_GI": False, "HAS_SLOTS": False,
                    "HAS_DSF": False}, num_warps=8, **kw),
        KernelCase("chunk backward", triton_chunk_bwd.ssd_chunk_bwd_kernel,
                   {**shapes, **on, **chunk_bwd}, num_warps=8, **kw),
        KernelCase("chunk backward, no options", triton_chunk_bwd.ssd_chunk_bwd_kernel,
                   {**shapes, **off, **chunk_bwd, **no_opts}, num_warps=8, **kw),
        KernelCase("scan decode step", triton_step.ssd_step_kernel,
                   dict(BLOCK_P=32, BLOCK_N=dstate, HAS_D=True, HAS_BIAS=True, SOFTPLUS=True,
                        HAS_K=True, HAS_GAIN=True), num_warps=8, **kw),
        KernelCase("FIR forward", fir._fir_fwd_kernel, {**fir_on, "SILU": True}, **kw),
        KernelCase("FIR backward dpre", fir._fir_bwd_dpre_kernel,
                   {**fir_on, "K_POW2": 32, "SILU": True}, **kw),
        KernelCase("FIR backward dx", fir._fir_bwd_dx_kernel,
                   {k: v for k, v in fir_on.items() if k != "HAS_BIAS"}, **kw),
        KernelCase("FIR decode step", fir._fir_step_kernel,
                   dict(K=32, HAS_BIAS=True, SILU=True, BLOCK_C=128), **kw),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80, 90")
    parser.add_argument("--verbose", action="store_true", help="print registers and spills")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the kernels must be built for compilation", file=sys.stderr)
        return 2
    failed = 0
    for case in kernel_cases():
        try:
            compiled = compile_case(case, args.arch)
        except Exception as err:  # report every kernel, then fail
            failed += 1
            print(f"FAILED {case.name}: {type(err).__name__}: {err}", flush=True)
            continue
        info = registers_and_spills(compiled, args.arch) if args.verbose else "ok"
        print(f"{case.name}: {info}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
