"""CPU benchmark of the chunked scan: GFSSM and Mamba-2 settings against the plain chunked
scan, a naive recurrence and causal scaled-dot-product attention, all in this process.

    python tests/benchmarks/ssd_cpu.py [--lengths 1024 4096 16384] [--repeats 3] [--json F]

Shapes follow the foundation issue: b1, H8, P64, N64, fp32. The "gfssm" row is the grouped
FIR (4, 8, 16, 32) on x, B, C plus the scan with 4 sink slots and 4 initial tokens; "mamba2"
is a 4-tap FIR plus the scan without sinks; "plain scan" is the scan alone. Ratios are
printed against the plain scan (overhead of FIR + sinks) and against SDPA (speed-up).

glibc returns every block over 32 MB to the kernel when it is freed, so each step pays page
faults for its large activations again (measured here: up to 3x slower and noisy at L=16k).
Unless ``--system-malloc`` is given, the script re-runs itself with glibc's mmap and trim
thresholds raised (the two ``MALLOC_*`` variables below, printed in the header); the same
setting speeds up CPU training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gfssm.kernels import grouped_fir, ssd_scan

B_, H, P, N, G = 1, 8, 64, 64, 1
CHANNELS = H * P + 2 * G * N
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in ms over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def fir_sizes_per_channel(sizes: tuple[int, ...]) -> torch.Tensor:
    F_ = len(sizes)
    table = torch.tensor(sizes)
    head = torch.arange(H).repeat_interleave(P)
    n = torch.arange(N).repeat(G)
    return torch.cat([table[head * F_ // H], table[n * F_ // N], table[n * F_ // N]])


def make_case(L: int, *, fir: tuple[int, ...] | None, sinks: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    leaf = dict(
        xbc=torch.randn(B_, L, CHANNELS, generator=g),
        dt=torch.randn(B_, L, H, generator=g) * 0.5 - 2,
        A=-torch.rand(H, generator=g) * 4 - 0.5,
        D=torch.ones(H),
        dt_bias=torch.zeros(H),
    )
    if fir is not None:
        K = max(fir)
        leaf["fir_w"] = torch.randn(CHANNELS, K, generator=g) / K
        leaf["fir_b"] = torch.zeros(CHANNELS)
    if sinks:
        leaf["sink_k"] = torch.randn(4, G, N, generator=g) / 8
        leaf["sink_v"] = torch.randn(4, H, P, generator=g) / 8
        leaf["sink_gain"] = torch.randn(H, generator=g)
    sizes = fir_sizes_per_channel(fir) if fir is not None else None

    def run(t: dict[str, torch.Tensor]) -> torch.Tensor:
        xbc = t["xbc"]
        if sizes is not None:
            xbc = grouped_fir(xbc, t["fir_w"], t["fir_b"], sizes)
        x, Bm, Cm = xbc.split([H * P, G * N, G * N], dim=-1)
        return ssd_scan(
            x.reshape(B_, L, H, P), t["dt"], t["A"],
            Bm.reshape(B_, L, G, N), Cm.reshape(B_, L, G, N), t["D"],
            dt_bias=t["dt_bias"], chunk_size=64,
            sink_k=t.get("sink_k"), sink_v=t.get("sink_v"), sink_gain=t.get("sink_gain"),
            n_init=4 if sinks else 0,
        )  # fmt: skip

    return leaf, run


def naive_case(L: int):
    """The recurrence one step at a time (vectorised over heads), as a baseline."""
    leaf, _ = make_case(L, fir=None, sinks=False)

    def run(t: dict[str, torch.Tensor]) -> torch.Tensor:
        x, Bm, Cm = t["xbc"].split([H * P, G * N, G * N], dim=-1)
        x = x.reshape(B_, L, H, P)
        delta = F.softplus(t["dt"] + t["dt_bias"])
        a = torch.exp(delta * t["A"])
        state = x.new_zeros(B_, H, P, N)
        ys = []
        for i in range(L):
            upd = (delta[:, i, :, None] * x[:, i])[..., None] * Bm[:, i, None, None, :]
            state = a[:, i, :, None, None] * state + upd
            ys.append(torch.einsum("bhpn,bn->bhp", state, Cm[:, i]))
        return torch.stack(ys, dim=1) + x * t["D"][:, None]

    return leaf, run


def sdpa_case(L: int):
    g = torch.Generator().manual_seed(0)
    leaf = {k: torch.randn(B_, H, L, P, generator=g) for k in ("q", "k", "v")}

    def run(t: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True)

    return leaf, run


def measure(case, repeats: int) -> tuple[float, float]:
    leaf, run = case
    with torch.no_grad():
        fwd = timed(lambda: run(leaf), repeats)
    params = {k: v.clone().requires_grad_(True) for k, v in leaf.items()}

    def fwd_bwd() -> None:
        out = run(params)
        out.backward(torch.ones_like(out))
        for p in params.values():
            p.grad = None

    return fwd, timed(fwd_bwd, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-max-length", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--system-malloc", action="store_true", help="keep glibc's default thresholds"
    )
    args = parser.parse_args()
    if not args.system_malloc and any(os.environ.get(k) != v for k, v in MALLOC_SETTINGS.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_SETTINGS})
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = (
        "glibc defaults"
        if args.system_malloc
        else " ".join(f"{k}={v}" for k, v in MALLOC_SETTINGS.items())
    )
    print(f"b{B_} H{H} P{P} N{N} fp32, chunk 64, {torch.get_num_threads()} threads; {malloc}")
    rows = []
    for L in args.lengths:
        cases = {
            "plain scan": make_case(L, fir=None, sinks=False),
            "mamba2": make_case(L, fir=(4,), sinks=False),
            "gfssm": make_case(L, fir=(4, 8, 16, 32), sinks=True),
            "sdpa causal": sdpa_case(L),
        }
        if L <= args.naive_max_length:
            cases["naive loop"] = naive_case(L)
        res = {name: measure(case, 1 if name == "naive loop" else args.repeats)
               for name, case in cases.items()}  # fmt: skip
        for name, (fwd, fb) in res.items():
            rows.append(
                dict(L=L, variant=name, fwd_ms=fwd, fwd_bwd_ms=fb,
                     fwd_bwd_vs_plain=fb / res["plain scan"][1],
                     sdpa_over_this_fwd_bwd=res["sdpa causal"][1] / fb)
            )  # fmt: skip
    print(f"{'L':>6} {'variant':<12} {'fwd ms':>9} {'fwd+bwd ms':>11} "
          f"{'fb / plain':>10} {'sdpa / this (fb)':>17}")  # fmt: skip
    for r in rows:
        print(f"{r['L']:>6} {r['variant']:<12} {r['fwd_ms']:>9.1f} {r['fwd_bwd_ms']:>11.1f} "
              f"{r['fwd_bwd_vs_plain']:>10.2f} {r['sdpa_over_this_fwd_bwd']:>17.2f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
