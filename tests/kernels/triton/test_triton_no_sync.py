"""On a GPU the layer's forward, backward and decode step never wait for the device (no host
sync: tap counts, the scan layout and the sink matrix are formed once, not read back per
call), run under CUDA-graph capture, and give bitwise identical gradients run to run (no
atomics). Skipped without a GPU; the interpreter cases elsewhere test the values."""

from __future__ import annotations

import os

import pytest
import torch

from gfssm import GFSSMConfig
from gfssm.cache import LayerCache
from gfssm.kernels import ScanState
from gfssm.mixer import GFSSMMixer

pytestmark = pytest.mark.cuda


@pytest.fixture(params=["fused", "chunked"])
def cuda(request, monkeypatch) -> torch.device:
    """A GPU, with each schedule of the scan (sequential over chunks, chunk-parallel)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: this run interprets the kernels on CPU")
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    monkeypatch.setenv("GFSSM_SSD_SCHEDULE", request.param)
    return torch.device("cuda")


def layer(device: torch.device) -> GFSSMMixer:
    torch.manual_seed(0)
    config = GFSSMConfig.preset(
        "gfssm", d_model=256, n_layer=1, vocab_size=8, d_state=64, headdim=64, chunk_size=64,
    )  # fmt: skip
    mixer = GFSSMMixer(config).to(device)
    with torch.no_grad():  # sinks start at zero; make them matter
        for name, p in mixer.named_parameters():
            if "sink" in name:
                p.normal_(0.0, 0.3)
    return mixer


def inputs(device: torch.device, b: int = 2, L: int = 300):
    g = torch.Generator(device="cpu").manual_seed(1)
    u = torch.randn(b, L, 256, generator=g).to(device).requires_grad_(True)
    seq_idx = torch.zeros(b, L, dtype=torch.int32)
    seq_idx[0, 120:] = 1
    return u, seq_idx.to(device)


def forward_backward(mixer, u, seq_idx):
    out = mixer(u, seq_idx=seq_idx)
    out.square().sum().backward()
    return out


def test_forward_and_backward_never_sync_with_the_host(cuda):
    mixer = layer(cuda)
    u, seq_idx = inputs(cuda)
    forward_backward(mixer, u, seq_idx)  # compiles, autotunes and fills the caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        forward_backward(mixer, u, seq_idx)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_decode_step_never_syncs_and_runs_in_a_cuda_graph(cuda):
    mixer = layer(cuda)
    cfg = mixer.config
    b = 3

    def fresh_cache() -> LayerCache:
        return LayerCache(
            fir_inputs=torch.zeros(b, cfg.fir_max - 1, cfg.fir_channels, device=cuda),
            scan=ScanState.zeros(b, cfg.nheads, cfg.headdim, cfg.d_state, device=cuda),
        )

    u = torch.randn(b, cfg.d_model, device=cuda)
    with torch.no_grad():
        warm = fresh_cache()
        mixer.step(u, warm)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            expected = mixer.step(u, warm)
        finally:
            torch.cuda.set_sync_debug_mode("default")

        cache = fresh_cache()
        mixer.step(u, cache)
        graph = torch.cuda.CUDAGraph()
        static = LayerCache(cache.fir_inputs.clone(), ScanState(*(t.clone() for t in cache.scan)))
        with torch.cuda.graph(graph):
            out = mixer.step(u, static)
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)


def test_forward_runs_in_a_cuda_graph(cuda):
    mixer = layer(cuda)
    u, seq_idx = inputs(cuda)
    with torch.no_grad():
        expected = mixer(u, seq_idx=seq_idx)  # compiles, autotunes and fills the caches
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = mixer(u, seq_idx=seq_idx)
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(out, expected)


def test_gradients_are_bitwise_deterministic(cuda):
    mixer = layer(cuda)
    u, seq_idx = inputs(cuda)
    runs = []
    for _ in range(3):
        mixer.zero_grad()
        u.grad = None
        forward_backward(mixer, u, seq_idx)
        runs.append([u.grad.clone()] + [p.grad.clone() for p in mixer.parameters()])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)
