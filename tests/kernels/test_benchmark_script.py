"""The parts of tests/benchmarks/ssd_gpu.py that need no GPU: its command line, the refusal
to run without one, and the markdown rendering of a results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ssd_gpu.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_help_works_without_a_gpu():
    out = run_script("--help")
    assert out.returncode == 0, out.stderr
    for option in ("--quick", "--out", "--lengths", "--render", "--mamba-chunk-size"):
        assert option in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_fails():
    out = run_script("--quick")
    assert out.returncode == 2
    assert "needs a CUDA GPU" in out.stderr


def test_render_turns_results_into_a_table_with_speedups(tmp_path):
    entry = dict(fwd={"ms": 0.5, "peak_mb": 100.0}, fwd_bwd={"ms": 2.0, "peak_mb": 300.0})
    slower = dict(fwd={"ms": 1.0, "peak_mb": 90.0}, fwd_bwd={"ms": 3.0, "peak_mb": 900.0})
    report = {
        "meta": dict(
            device="some GPU",
            date="2026-01-01",
            torch="2.11",
            triton="3.6",
            copy_gbs=3000.0,
            batch=8,
            heads=32,
            headdim=64,
            dstate=128,
            chunk_size=64,
            dtype="bfloat16",
        ),
        "results": [
            {"impl": "gfssm-triton Q64", "kind": "scan", "L": 8192, **entry},
            {"impl": "mamba-ssm", "kind": "scan", "L": 8192, **slower},
            {"impl": "mamba-ssm", "kind": "scan", "L": 2048, "note": "absent: not installed"},
        ],
        "forward_limits_ms": {"8192": 0.17},
    }
    path = tmp_path / "ssd_gpu.json"
    path.write_text(json.dumps(report))
    out = run_script("--render", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    ours = next(line for line in lines if "gfssm-triton Q64" in line)
    assert "| 0.500 | 2.000 | 100 | 300 | 1.50x |" in ours
    assert any("absent: not installed" in line for line in lines)
    assert "L=8192: 0.170 ms" in out.stdout
    assert lines[0].startswith("GPU: some GPU, 2026-01-01")
