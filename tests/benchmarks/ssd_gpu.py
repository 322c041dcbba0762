"""GPU benchmark of GFSSM's Triton kernels: time and peak memory, forward and forward+backward.

Compares, at b8, L in {2k, 8k, 32k}, H32, P64, N128, bf16 (``--quick``: small shapes):

- ``gfssm-triton``: our chunked scan with sinks on (gfssm preset: 4 sink slots, n_init 4,
  gain) and, as ``gfssm-triton-nosink``, with them off (the Mamba-2 special case);
- ``gfssm-reference``: our plain-PyTorch reference on the same GPU;
- ``mamba-ssm``: ``mamba_chunk_scan_combined`` from the ``mamba_ssm`` package, when it
  imports (its Triton ops need no compiled extension); reported as absent otherwise;
- ``sdpa-causal``: ``scaled_dot_product_attention(is_causal=True)`` with equal heads;
- the grouped FIR kernel against ``torch.nn.functional.conv1d`` (depthwise, causal).

Times are medians from ``triton.testing.do_bench``; a device-to-device copy measured in the
same process gives the memory-bound limit of the scan's forward (bytes it must move / copy
bandwidth). Writes ``<out>/ssd_gpu.json`` and ``<out>/ssd_gpu.md``. ``--render JSON`` turns
an existing JSON into the markdown table (no GPU needed).

Run: ``python tests/benchmarks/ssd_gpu.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

FULL = dict(batch=8, lengths=[2048, 8192, 32768], heads=32, headdim=64, dstate=128)
QUICK = dict(batch=2, lengths=[1024, 4096], heads=8, headdim=64, dstate=64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a quick check")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="output dir")
    parser.add_argument("--batch", type=int, help="batch size (default 8, quick 2)")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths")
    parser.add_argument("--heads", type=int, help="heads H (default 32)")
    parser.add_argument("--headdim", type=int, help="head dim P (default 64)")
    parser.add_argument("--dstate", type=int, help="state size N (default 128)")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[64, 128],
                        help="our chunk lengths Q to try (the result does not depend on Q)")  # fmt: skip
    parser.add_argument("--mamba-chunk-size", type=int, default=256, help="mamba_ssm's chunk")
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--render", type=Path, help="only render this JSON as a markdown table")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# --- measurement ---------------------------------------------------------------------


def measure(fn: Callable[[], object]) -> dict:
    """Median time (ms) of ``fn`` and the peak memory it allocates beyond what was live."""
    from triton.testing import do_bench

    try:
        fn()  # compile, autotune
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
        return {"ms": ms, "peak_mb": peak}
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"ms": None, "peak_mb": None, "note": "out of memory"}


def fwd_and_bwd(op: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> dict:
    """Measure ``op(*inputs)`` forward, and forward + backward w.r.t. every float input."""
    leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    with torch.no_grad():
        grad = torch.randn_like(op(*leaves))

    def forward():
        with torch.no_grad():
            return op(*leaves)

    def forward_backward():
        y = op(*leaves)
        return torch.autograd.grad(y, [t for t in leaves if t.requires_grad], grad)

    return {"fwd": measure(forward), "fwd_bwd": measure(forward_backward)}


def copy_bandwidth_gbs(device: torch.device) -> float:
    """Device-to-device copy bandwidth (read + write) in GB/s, measured here."""
    from triton.testing import do_bench

    src = torch.empty(2**28, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=10, rep=50, return_mode="median")
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def load_mamba_chunk_scan():
    """``mamba_chunk_scan_combined`` from mamba_ssm, or (None, why not). The package's
    ``__init__`` imports its compiled CUDA extension; when that was not built
    (``MAMBA_SKIP_CUDA_BUILD=TRUE pip install mamba-ssm``), the Triton ops are loaded under
    a bare package module instead, since they need no extension."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        return mamba_chunk_scan_combined, None
    except ImportError as err:
        first_error = err
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        return None, f"mamba_ssm is not installed ({first_error})"
    for name in [k for k in sys.modules if k == "mamba_ssm" or k.startswith("mamba_ssm.")]:
        del sys.modules[name]
    package = types.ModuleType("mamba_ssm")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["mamba_ssm"] = package
    try:
        module = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    except Exception as err:  # any failure means the op is not available here
        return None, f"mamba_ssm's Triton ops do not import: {err}"
    return module.mamba_chunk_scan_combined, None


def scan_inputs(b, L, H, P, N, dtype, device, sinks: bool):
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dt)

    f32 = torch.float32
    inputs = dict(x=r(b, L, H, P), dt=r(b, L, H, scale=0.5), A=-torch.rand(H, device=device) - 1,
                  B=r(b, L, 1, N, scale=N**-0.5), C=r(b, L, 1, N, scale=N**-0.5),
                  D=r(H, dt=f32), dt_bias=r(H, scale=0.3, dt=f32))  # fmt: skip
    if sinks:
        inputs.update(sink_k=r(4, 1, N, scale=N**-0.5, dt=f32), sink_v=r(4, H, P, dt=f32),
                      sink_gain=r(H, dt=f32))  # fmt: skip
    return inputs


def bench_scan(args, L: int, device: torch.device, dtype: torch.dtype) -> list[dict]:
    from gfssm.kernels import ssd_scan

    b, H, P, N = args.batch, args.heads, args.headdim, args.dstate
    rows = []

    def ours(mode: str, sinks: bool, chunk: int):
        inp = scan_inputs(b, L, H, P, N, dtype, device, sinks)
        names = list(inp)

        def op(*tensors):
            return ssd_scan(**dict(zip(names, tensors)), chunk_size=chunk,
                            n_init=4 if sinks else 0)  # fmt: skip

        os.environ["GFSSM_KERNELS"] = mode
        return fwd_and_bwd(op, list(inp.values()))

    for chunk in args.chunk_sizes:
        rows.append({"impl": f"gfssm-triton Q{chunk}", **ours("triton", True, chunk)})
        rows.append({"impl": f"gfssm-triton-nosink Q{chunk}", **ours("triton", False, chunk)})
    rows.append({"impl": "gfssm-reference Q64", **ours("reference", True, 64)})
    mamba_chunk_scan_combined, why_not = load_mamba_chunk_scan()
    if mamba_chunk_scan_combined is None:
        print(f"mamba-ssm: absent, {why_not}", flush=True)
        rows.append({"impl": "mamba-ssm", "note": f"absent: {why_not}"})
    else:
        inp = scan_inputs(b, L, H, P, N, dtype, device, sinks=False)

        def mamba(x, dt, A, B, C, D, dt_bias):
            return mamba_chunk_scan_combined(
                x, dt, A, B, C, args.mamba_chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True
            )

        rows.append({"impl": "mamba-ssm", **fwd_and_bwd(mamba, list(inp.values()))})
    q, k, v = (torch.randn(b, H, L, P, device=device, dtype=dtype) for _ in range(3))
    sdpa = fwd_and_bwd(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                       [q, k, v])  # fmt: skip
    rows.append({"impl": "sdpa-causal", **sdpa})
    for row in rows:
        row.update(kind="scan", L=L)
    return rows


def bench_fir(args, L: int, device: torch.device, dtype: torch.dtype) -> list[dict]:
    from gfssm.kernels import grouped_fir

    os.environ["GFSSM_KERNELS"] = "triton"
    b = args.batch
    channels = args.heads * args.headdim + 2 * args.dstate  # x, B and C of one group
    rows = []
    for sizes in [(4,), (4, 8, 16, 32)]:
        K = max(sizes)
        x = torch.randn(b, L, channels, device=device, dtype=dtype)
        w = torch.randn(channels, K, device=device) / K
        bias = torch.zeros(channels, device=device)
        ks = torch.tensor([sizes[c * len(sizes) // channels] for c in range(channels)],
                          device=device)  # fmt: skip

        def ours(x, w, bias, ks=ks):
            return grouped_fir(x, w, bias, ks)

        def conv(x, w, bias, K=K):
            y = F.conv1d(x.transpose(1, 2), w.flip(-1).unsqueeze(1).to(x.dtype),
                         bias.to(x.dtype), padding=K - 1, groups=channels)  # fmt: skip
            return F.silu(y[..., :L]).transpose(1, 2)

        for impl, op in (("fir-triton", ours), ("conv1d+silu", conv)):
            rows.append({"impl": impl, "kind": f"fir K={K}", "L": L,
                         **fwd_and_bwd(op, [x, w, bias])})  # fmt: skip
    return rows


# --- reporting -----------------------------------------------------------------------


def _ms(entry: dict | None) -> str:
    if not entry or entry.get("ms") is None:
        return (entry or {}).get("note", "-")
    return f"{entry['ms']:.3f}"


def _mb(entry: dict | None) -> str:
    if not entry or entry.get("peak_mb") is None:
        return "-"
    return f"{entry['peak_mb']:.0f}"


def render_markdown(report: dict) -> str:
    """The results as a markdown table, with speed-ups against mamba_ssm where measured."""
    meta = report["meta"]
    lines = [
        f"GPU: {meta['device']}, {meta['date']}, torch {meta['torch']}, triton {meta['triton']}",
        f"Shapes: b{meta['batch']}, H{meta['heads']}, P{meta['headdim']}, N{meta['dstate']}, "
        f"{meta['dtype']}; copy bandwidth "
        f"{meta['copy_gbs']:.0f} GB/s.",
        "",
        "| kind | L | impl | fwd ms | fwd+bwd ms | fwd peak MB | fwd+bwd peak MB | "
        "fwd+bwd vs mamba-ssm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = report["results"]
    mamba = {(r["kind"], r["L"]): r for r in rows if r["impl"] == "mamba-ssm"}
    for r in rows:
        ref = mamba.get((r["kind"], r["L"]), {}).get("fwd_bwd") or {}
        mine = r.get("fwd_bwd") or {}
        ratio = "-"
        if ref.get("ms") and mine.get("ms") and r["impl"] != "mamba-ssm":
            ratio = f"{ref['ms'] / mine['ms']:.2f}x"
        fwd = _ms(r.get("fwd")) if "fwd" in r else r.get("note", "-")
        lines.append(
            f"| {r['kind']} | {r['L']} | {r['impl']} | {fwd} | {_ms(r.get('fwd_bwd'))} | "
            f"{_mb(r.get('fwd'))} | {_mb(r.get('fwd_bwd'))} | {ratio} |"
        )
    limits = report.get("forward_limits_ms", {})
    if limits:
        lines += ["", "Memory-bound limit of the scan's forward (bytes / copy bandwidth):"]
        lines += [f"- L={L}: {ms:.3f} ms" for L, ms in limits.items()]
    return "\n".join(lines) + "\n"


def forward_limit_ms(args, L: int, element_bytes: int, copy_gbs: float) -> float:
    """Read x, dt, B, C and write y, once each."""
    b, H, P, N = args.batch, args.heads, args.headdim, args.dstate
    elements = b * L * (2 * H * P + H + 2 * N)
    return elements * element_bytes / (copy_gbs * 1e9) * 1e3


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        print(render_markdown(json.loads(args.render.read_text())), end="")
        return 0
    if not torch.cuda.is_available():
        print("ssd_gpu.py needs a CUDA GPU; none is visible here (use --render to format "
              "existing results)", file=sys.stderr)  # fmt: skip
        return 2
    import triton

    device = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    copy_gbs = copy_bandwidth_gbs(device)
    results, limits = [], {}
    for L in args.lengths:
        print(f"L={L}: scan", flush=True)
        results += bench_scan(args, L, device, dtype)
        limits[str(L)] = forward_limit_ms(args, L, dtype.itemsize, copy_gbs)
        print(f"L={L}: FIR", flush=True)
        results += bench_fir(args, L, device, dtype)
    report = {
        "meta": {
            "device": torch.cuda.get_device_name(device),
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "copy_gbs": copy_gbs,
            **{k: getattr(args, k) for k in ("batch", "heads", "headdim", "dstate")},
            "dtype": args.dtype,
        },
        "results": results,
        "forward_limits_ms": limits,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ssd_gpu.json").write_text(json.dumps(report, indent=2))
    table = render_markdown(report)
    (args.out / "ssd_gpu.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
