"""Resource check of every Triton kernel of gfssm, through Triton's real launch path, without
a GPU.

The public launchers (``ssd_scan`` forward and backward, ``grouped_fir`` forward and
backward, both decode steps) run on ``meta`` tensors of the shapes users run, with a
stand-in Triton driver that reports an sm_90a target (or ``--arch``). So every kernel is
specialised by Triton exactly as on the GPU (argument values, divisibility and alignment,
constexprs), the autotuner prunes its configs with the kernels' own ``prune_configs_by``
and "benchmarks" each remaining config, which compiles it with the bundled ``ptxas``; the
stand-in driver then loads nothing and launches nothing. Per compiled config it records
registers and spill bytes (``ptxas -v``) and the shared memory Triton asks for at launch
(``metadata.shared``), and fails when a config the autotuner may pick (any config left
after pruning) needs more shared memory than the device has, or when a launch fails.

    python -m gfssm.kernels.triton_compile_check [--arch 90] [--jobs 2] [--quick] [--table]

Cases: float32, bfloat16 and float16; d_state 64 and 128; chunk 64 and 128; the scan with
sinks (learned slots, initial tokens, packed sequences) and without (Mamba-2), at the
benchmark shape b8 L8192 H32 P64 (``--length`` to change L); and the chunk-parallel
schedule of the scan (forced at the same shape, so only its own kernels compile anew) at
float32 and bfloat16, d_state 128. Run it in a process where
``TRITON_INTERPRET`` is unset. Exit status 0 when every config fits and every launch works.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch

# Shared memory per block (opt-in maximum) by compute capability.
MAX_SHARED = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Case:
    dtype: str
    d_state: int
    chunk: int
    sinks: bool
    batch: int = 8
    length: int = 8192
    heads: int = 32
    headdim: int = 64
    schedule: str = "auto"  # of the scan (GFSSM_SSD_SCHEDULE)

    @property
    def label(self) -> str:
        kind = "sinks" if self.sinks else "plain"
        label = f"{self.dtype} N{self.d_state} Q{self.chunk} {kind}"
        if self.schedule != "auto":
            label += f" {self.schedule}"
        if (self.batch, self.length, self.heads) != (8, 8192, 32):
            label += f" b{self.batch} L{self.length} H{self.heads}"
        return label


@dataclass
class Record:
    """One compiled kernel config."""

    case: str
    kernel: str
    config: str
    registers: int
    spill_stores: int
    spill_loads: int
    shared: int
    fits: bool
    estimate: int = -1  # the autotuner's shared-memory bound (-1: the kernel has none)


class _Launcher:
    """Stands in for Triton's CUDA launcher: launching does nothing."""

    def __init__(self, src, metadata):
        self.metadata = metadata

    def __call__(self, *args, **kwargs):
        return None


class _Utils:
    def __init__(self, arch: int, recorder):
        self.arch = arch
        self.recorder = recorder

    def get_device_properties(self, device):
        return {"max_shared_mem": MAX_SHARED.get(self.arch, 232_448),
                "multiprocessor_count": 132, "max_num_regs": 65536, "warpSize": 32,
                "sm_clock_rate": 1_980_000, "mem_clock_rate": 2_619_000,
                "mem_bus_width": 5120}  # fmt: skip

    def load_binary(self, name, kernel, shared, device):
        regs, spills = self.recorder.loaded(name)
        return 1, 1, regs, spills, 1024


class StandInDriver:
    """The part of Triton's driver interface the JIT, the autotuner and the compiled
    kernel use, for a GPU that is not there."""

    def __init__(self, arch: int, recorder):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)
        self.utils = _Utils(arch, recorder)
        self.recorder = recorder
        outer = self

        class Launcher(_Launcher):
            def __init__(self, src, metadata):
                super().__init__(src, metadata)
                outer.recorder.compiled(src, metadata)

        self.launcher_cls = Launcher

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("meta")

    def get_benchmarker(self):
        def bench(kernel_call, quantiles=None, **kwargs):
            kernel_call()  # compiles, checks resources (OutOfResources), "launches"
            return [1.0, 1.0, 1.0] if quantiles else 1.0

        return bench


_PTXAS_STATS = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)


class Recorder:
    """Collects, per compiled kernel, ptxas's statistics (its ``-v`` log, which Triton prints
    when asked) and the launch metadata."""

    def __init__(self, case: str, log: io.StringIO):
        self.case = case
        self.log = log
        self.records: list[Record] = []
        self.max_shared = 0
        self._pending: Record | None = None

    def _ptxas_stats(self) -> tuple[int, int, int]:
        text = self.log.getvalue()
        self.log.seek(0)
        self.log.truncate()
        regs = [int(r) for r in re.findall(r"Used (\d+) registers", text)]
        stats = [tuple(map(int, m)) for m in _PTXAS_STATS.findall(text)]
        stores = max((s[1] for s in stats), default=-1)
        loads = max((s[2] for s in stats), default=-1)
        return max(regs, default=-1), stores, loads

    def compiled(self, src, metadata) -> None:
        name = getattr(getattr(src, "fn", None), "__name__", metadata.name)
        names = getattr(getattr(src, "fn", None), "arg_names", [])
        consts = {names[k[0]]: v for k, v in (getattr(src, "constants", {}) or {}).items()
                  if isinstance(k, tuple) and len(k) == 1}  # fmt: skip
        tuned = [f"{k}={v}" for k, v in consts.items() if k in _dims_of(src)]
        regs, stores, loads = self._ptxas_stats()
        config = " ".join([*tuned, f"w{metadata.num_warps}", f"s{metadata.num_stages}"])
        record = Record(self.case, name, config, regs, stores, loads, metadata.shared,
                        metadata.shared <= self.max_shared,
                        _estimate(name, consts, src, metadata))  # fmt: skip
        self.records.append(record)

    def loaded(self, name: str) -> tuple[int, int]:
        last = self.records[-1] if self.records else None
        return (last.registers, last.spill_stores) if last else (0, 0)


# Strides between rows (positions t) of the per-position tensors, and the FIR's row length:
# a row index times one of these passes 2^31 on long windows, so it must be 64-bit.
ROW_STRIDES = {"sxl", "sdl", "syl", "sbl", "scl", "shl", "sdyl"}
_IR_OP = re.compile(r"^\s*(%[\w.#-]+) = ([\w.]+) (.*?) : ([^:]*?)(?: loc\(.*)?$")


def int32_row_offsets(ttir: str, kernel: str) -> list[str]:
    """Multiplications in 32 bits by a row stride, in a kernel's TTIR: each is an offset
    that overflows once ``t * stride`` passes 2^31 (L ~ 490k for a slice of the layer's
    input projection). Values are traced through splat, broadcast and expand_dims."""
    strides = ROW_STRIDES | (
        {"C"}
        if kernel in ("_fir_fwd_kernel", "_fir_bwd_dpre_kernel", "_fir_bwd_dx_kernel")
        else set()
    )
    origin: dict[str, set[str]] = {f"%{s}": {s} for s in strides}
    found = []
    for line in ttir.splitlines():
        m = _IR_OP.match(line)
        if not m:
            continue
        name, op, operands, rtype = m.groups()
        args = re.findall(r"%[\w.#-]+", operands)
        if op in ("tt.splat", "tt.broadcast", "tt.expand_dims") and args:
            if args[0] in origin:
                origin[name] = origin[args[0]]
        elif op == "arith.muli" and (rtype.strip() == "i32" or rtype.strip().endswith("xi32>")):
            hit = set().union(*(origin.get(a, set()) for a in args))
            if hit:
                found.append(f"{kernel}: 32-bit offset, row index times {', '.join(sorted(hit))}")
    return sorted(set(found))


def _estimate(name: str, consts: dict, src, metadata) -> int:
    """The kernel's registered shared-memory bound for this compiled config, or -1."""
    from gfssm.kernels.triton_support import SHARED_ESTIMATES

    if name not in SHARED_ESTIMATES:
        return -1
    ptr = getattr(src, "signature", {}).get("x_ptr", "*fp32")
    elem = {"*fp32": 4, "*bf16": 2, "*fp16": 2}.get(ptr, 4)
    params = {**consts, "elem": elem, "num_stages": metadata.num_stages}
    return int(SHARED_ESTIMATES[name](params))


def _dims_of(src) -> set[str]:
    """Constexprs worth showing in a config: the block sizes and the chunk."""
    names = getattr(getattr(src, "fn", None), "arg_names", [])
    return {n for n in names if n.startswith("BLOCK_") or n in ("Q", "K", "STRIDE")}


def _meta(*shape, dtype):
    return torch.empty(*shape, device="meta", dtype=dtype)


def run_case(case: Case) -> list[Record]:
    """Forward and backward of the scan and the FIR, and both decode steps, at ``case``."""
    from gfssm.kernels.fir.triton_ops import fir_step_triton, grouped_fir_triton
    from gfssm.kernels.ssd.triton_chunked import SCHEDULE_ENV
    from gfssm.kernels.ssd.triton_ops import ssd_scan_triton, ssd_step_triton
    from gfssm.kernels.state import ScanState

    os.environ[SCHEDULE_ENV] = case.schedule

    dt_ = DTYPES[case.dtype]
    b, L, H, P, N, G = case.batch, case.length, case.heads, case.headdim, case.d_state, 1
    d_inner = H * P
    conv = d_inner + 2 * G * N
    width = 2 * d_inner + 2 * G * N + H  # the layer's input projection: z, xBC, dt
    proj = _meta(b, L, width, dtype=dt_).requires_grad_(True)
    xBC_in = proj[..., d_inner : d_inner + conv]
    dt = proj[..., d_inner + conv :]
    K = 32 if case.sinks else 4
    weight = _meta(conv, K, dtype=dt_).requires_grad_(True)
    bias = _meta(conv, dtype=dt_).requires_grad_(True)
    sizes = torch.full((conv,), K, dtype=torch.long, device="meta")
    seq_idx = torch.zeros(b, L, dtype=torch.int32, device="meta") if case.sinks else None
    xBC = grouped_fir_triton(xBC_in, weight, bias, sizes, activation="silu", seq_idx=seq_idx)
    x = xBC[..., :d_inner].view(b, L, H, P)
    B = xBC[..., d_inner : d_inner + G * N].view(b, L, G, N)
    C = xBC[..., d_inner + G * N :].view(b, L, G, N)
    params = {k: _meta(H, dtype=torch.float32).requires_grad_(True) for k in ("A", "D", "bias")}
    sink = {}
    if case.sinks:
        sink = dict(
            sink_k=_meta(4, G, N, dtype=torch.float32).requires_grad_(True),
            sink_v=_meta(4, H, P, dtype=torch.float32).requires_grad_(True),
            sink_gain=_meta(H, dtype=torch.float32).requires_grad_(True),
            n_init=4,
            seq_idx=seq_idx,
        )
    y = ssd_scan_triton(x, dt, params["A"], B, C, params["D"], dt_bias=params["bias"],
                        chunk_size=case.chunk, **sink)  # fmt: skip
    y.backward(torch.empty_like(y))

    # Decode steps, one token for b streams.
    state = ScanState(_meta(b, H, P, N, dtype=torch.float32),
                      _meta(b, H, P, N, dtype=torch.float32),
                      torch.zeros(b, dtype=torch.long, device="meta"))  # fmt: skip
    step_sink = {k: v for k, v in sink.items() if k != "seq_idx"}
    with torch.no_grad():
        ssd_step_triton(_meta(b, H, P, dtype=dt_), _meta(b, H, dtype=dt_), params["A"],
                        _meta(b, G, N, dtype=dt_), _meta(b, G, N, dtype=dt_), params["D"],
                        state=state, dt_bias=params["bias"], **step_sink)  # fmt: skip
        fir_step_triton(_meta(b, conv, dtype=dt_), _meta(b, K - 1, conv, dtype=dt_),
                        weight, bias, sizes)  # fmt: skip
    return []


def check_cases(args: tuple[list[Case], int]) -> tuple[list[Record], list[str]]:
    """Run cases in this process under the stand-in driver; (records, errors). Kernels
    already compiled by an earlier case of the same process are not compiled again (a
    requested chunk of 128 runs at the kernels' 64, for instance): their records stay with
    the case that compiled them."""
    cases, arch = args
    os.environ.pop("TRITON_INTERPRET", None)
    cache_dir = tempfile.mkdtemp(prefix="gfssm-resource-check-")
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    try:
        return _compile_cases(cases, arch)
    finally:  # ~40 MB of compiled kernels per process, of no use once read
        shutil.rmtree(cache_dir, ignore_errors=True)


def _compile_cases(cases: list[Case], arch: int) -> tuple[list[Record], list[str]]:
    import triton
    from triton import knobs
    from triton.runtime.driver import driver

    knobs.nvidia.dump_ptxas_log = True
    log = io.StringIO()
    recorder = Recorder("", log)
    recorder.max_shared = MAX_SHARED.get(arch, 232_448)
    driver.set_active(StandInDriver(arch, recorder))
    errors: list[str] = []
    for case in cases:
        recorder.case = case.label
        with contextlib.redirect_stdout(log):
            try:
                run_case(case)
            except triton.runtime.errors.OutOfResources as err:
                errors.append(f"{case.label}: launch fails: {err}")
            except Exception as err:
                errors.append(f"{case.label}: {type(err).__name__}: {err}")
    for compiled in compiled_kernels():
        errors += int32_row_offsets(compiled.asm["ttir"], compiled.name)
    return recorder.records, sorted(set(errors))


def check_case(args: tuple[Case, int]) -> tuple[list[Record], list[str]]:
    case, arch = args
    return check_cases(([case], arch))


def compiled_kernels() -> list:
    """Every kernel compiled in this process (Triton's in-memory caches of gfssm's kernels)."""
    from triton.runtime.jit import JITFunction

    from gfssm.kernels.fir import triton as fir
    from gfssm.kernels.ssd import triton_chunk_bwd, triton_chunk_state, triton_scan, triton_step

    seen, out = set(), []
    for module in (fir, triton_scan, triton_chunk_bwd, triton_chunk_state, triton_step):
        for obj in vars(module).values():
            while not isinstance(obj, JITFunction) and hasattr(obj, "fn"):
                obj = obj.fn
            if isinstance(obj, JITFunction) and id(obj) not in seen:
                seen.add(id(obj))
                for cache in obj.device_caches.values():
                    out += list(cache[0].values())
    return out


def all_cases(length: int, quick: bool = False) -> list[Case]:
    if quick:  # the benchmark shape in bf16, and a 2^20 window (the DNA task's longest) in fp32
        return [
            Case("bf16", 128, 64, True, length=length),
            Case("fp32", 128, 64, True, batch=1, length=1 << 20, heads=8),
        ]
    chunked = [Case("fp32", 128, 64, True, length=length, schedule="chunked")]
    chunked += [Case("bf16", 128, 64, s, length=length, schedule="chunked") for s in (True, False)]
    return [
        Case(d, n, q, s, length=length)
        for d, n, q, s in itertools.product(DTYPES, (64, 128), (64, 128), (True, False))
    ] + chunked


def summary_table(records: list[Record]) -> str:
    """Markdown: per (case, kernel) the range over the configs that compiled."""
    rows = ["| case | kernel | configs | registers | spill stores (B) | shared (B) | fits |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.case, r.kernel), []).append(r)

    def span(values):
        lo, hi = min(values), max(values)
        return f"{lo}" if lo == hi else f"{lo}-{hi}"

    for (case, kernel), rs in groups.items():
        fits = sum(r.fits for r in rs)
        rows.append(
            f"| {case} | {kernel} | {len(rs)} | {span([r.registers for r in rs])} | "
            f"{span([r.spill_stores for r in rs])} | {span([r.shared for r in rs])} | "
            f"{fits}/{len(rs)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80, 90")
    parser.add_argument("--jobs", type=int, default=2, help="cases compiled in parallel")
    parser.add_argument("--length", type=int, default=8192, help="sequence length L")
    parser.add_argument("--quick", action="store_true", help="two cases: bf16, fp32 at L=2^20")
    parser.add_argument("--verbose", action="store_true", help="print every config")
    parser.add_argument("--table", metavar="FILE", help="write the markdown summary here")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the kernels must be built for compilation", file=sys.stderr)
        return 2
    start = time.time()
    cases = all_cases(args.length, args.quick)
    records: list[Record] = []
    errors: list[str] = []
    groups: dict[tuple, list[Case]] = {}
    for c in cases:  # one process per dtype and d_state: the kernels they share compile once
        groups.setdefault((c.dtype, c.d_state), []).append(c)
    tasks = [(group, args.arch) for group in groups.values()]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for recs, errs in pool.map(check_cases, tasks):
            records += recs
            errors += errs
            for r in recs if args.verbose else ():
                print(asdict(r), flush=True)
    table = summary_table(records)
    print(table)
    if args.table:
        with open(args.table, "w") as f:
            f.write(table + "\n")
    too_big = [r for r in records if not r.fits]
    under = [r for r in records if 0 <= r.estimate < r.shared]
    for r in under:
        print(f"SHARED-MEMORY BOUND TOO LOW {r.case} {r.kernel} [{r.config}]: estimate "
              f"{r.estimate} B < {r.shared} B allocated", file=sys.stderr)  # fmt: skip
    for r in too_big:
        print(f"TOO MUCH SHARED MEMORY {r.case} {r.kernel} [{r.config}]: {r.shared} B "
              f"> {MAX_SHARED.get(args.arch)} B", file=sys.stderr)  # fmt: skip
    for e in errors:
        print(f"FAILED {e}", file=sys.stderr)
    print(f"{len(records)} configs compiled for sm_{args.arch} in {time.time() - start:.0f} s; "
          f"{len(too_big)} too large, {len(under)} above their bound, "
          f"{len(errors)} errors")  # fmt: skip
    return 1 if too_big or errors or under else 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
