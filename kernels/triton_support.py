"""Loading the Triton kernels: the lazy import, the compile-or-interpret check, launch helpers.

Triton decides between compiling and interpreting when a kernel is *decorated*, i.e. when
the module that defines it is imported. The kernel modules are therefore imported only when
the dispatch first selects Triton, and each records the mode it was built in; using them
after ``TRITON_INTERPRET`` changed is an error rather than a confusing crash deep in Triton.
Nothing here imports triton at module level, so ``import gfssm.kernels`` stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from types import ModuleType

import torch

from gfssm.kernels.dispatch import KernelBackendError, triton_interpreting

# Set to 1 to fill every buffer the Triton ops allocate with NaN (float) or -1 (int) before
# the kernels run: a read of memory no kernel wrote then shows up in the result (tests).
POISON_ENV = "GFSSM_KERNELS_POISON"

# Dtypes the Triton kernels take; float64 stays on the PyTorch reference.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def has_triton_kernel(*tensors: torch.Tensor | None) -> bool:
    """True when every given floating tensor has a dtype the Triton kernels support."""
    return all(t is None or t.dtype in TRITON_DTYPES for t in tensors)


def load_triton_module(name: str) -> ModuleType:
    """Import ``gfssm.kernels.<name>`` (a module of Triton kernels) and check that its
    kernels were built for the current mode (compiled for CUDA or interpreted on CPU)."""
    if triton_language_interpreted() != triton_interpreting():
        now = "set" if triton_interpreting() else "unset"
        raise KernelBackendError(
            f"TRITON_INTERPRET is {now} now but was not when triton was first imported in "
            "this process; Triton fixes compile-or-interpret at import, so set "
            "TRITON_INTERPRET before anything imports triton"
        )
    module = importlib.import_module(f"gfssm.kernels.{name}")
    built_interpreted = module.BUILT_INTERPRETED
    if built_interpreted != triton_interpreting():
        now = "set" if triton_interpreting() else "unset"
        raise KernelBackendError(
            f"TRITON_INTERPRET is {now} now, but the Triton kernels of gfssm.kernels.{name} were "
            f"built {'for the interpreter' if built_interpreted else 'for CUDA'} when first "
            "used in this process; set TRITON_INTERPRET before the first kernel call"
        )
    return module


def triton_language_interpreted() -> bool:
    """Whether triton's own ``@jit`` helpers (``tl.zeros``, ...) were decorated for the
    interpreter, i.e. ``TRITON_INTERPRET=1`` held when triton was first imported."""
    import triton.language.standard as standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.zeros, InterpretedFunction)


def built_interpreted() -> bool:
    """For kernel modules to record, at import, how their kernels were decorated."""
    return triton_interpreting()


def for_gpu(t: torch.Tensor) -> bool:
    """Whether launch settings should be those of a GPU: CUDA tensors, and ``meta`` tensors
    (the resource check compiles the kernels for a GPU through the real launchers)."""
    return t.is_cuda or t.is_meta


def fp32_dot_precision() -> str:
    """``input_precision`` of ``tl.dot`` on float32 operands: TF32 tensor cores on a GPU
    (states and accumulators stay float32), exact in the interpreter."""
    return "ieee" if triton_interpreting() else "tf32"


def new_buffer(*shape: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty`` for kernel outputs and scratch, poisoned under ``GFSSM_KERNELS_POISON=1``."""
    out = torch.empty(*shape, device=device, dtype=dtype)
    if os.environ.get(POISON_ENV, "0") == "1":
        out.fill_(float("nan") if dtype.is_floating_point else -1)
    return out


def next_power_of_2(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def one_config_when_interpreting(configs: list, interpreter_config):
    """Autotune configs: the full list on a GPU, a single one in the interpreter (which
    cannot benchmark and fails on several configurations)."""
    return [interpreter_config] if triton_interpreting() else configs


def grads_through_reference(fn, inputs: list, needs: list[bool], grad_outputs: list) -> list:
    """Gradients of ``fn(*inputs)`` (a PyTorch reference returning a tuple of tensors) for
    the inputs flagged in ``needs``, by autograd on a recomputation. Used by the backward of
    the decode-step kernels, which run without gradients in practice."""
    leaves = [
        t.detach().requires_grad_(need) if isinstance(t, torch.Tensor) else t
        for t, need in zip(inputs, needs)
    ]
    wanted = [t for t, need in zip(leaves, needs) if need]
    if not wanted:
        return [None] * len(inputs)
    with torch.enable_grad():
        outputs = fn(*leaves)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None and o.requires_grad]
        if not pairs:
            return [None] * len(inputs)
        grads = torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True
        )
    found = iter(grads)
    return [next(found) if need else None for need in needs]


def on_input_device(method):
    """Run an autograd ``forward``/``backward`` with the current CUDA device set to that of
    its first tensor argument: Triton launches on the current device, which need not be the
    tensors' (several GPUs in one process)."""

    @functools.wraps(method)
    def wrapper(ctx, *args):
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        guard = torch.cuda.device(first.device) if first is not None and first.is_cuda else None
        with guard if guard is not None else contextlib.nullcontext():
            return method(ctx, *args)

    return wrapper


class TensorCache:
    """Values derived from small tensors that rarely change (the FIR tap counts, the learned
    sink's matrix, a batch's layout), computed once and reused while every key tensor is
    alive and unmodified (same storage, same ``_version``): no recomputation and no host
    sync per call, so the ops can run under CUDA-graph capture after a first call.

    Entries hold weak references to their key tensors; at most ``size`` are kept. A change
    made through ``tensor.data`` (which has its own version counter) is not seen; inference
    tensors (no version counter) are never cached."""

    def __init__(self, size: int = 16):
        self.size = size
        self._entries: dict = {}

    @staticmethod
    def _stamp(t):
        if isinstance(t, torch.Tensor):
            try:
                version = t._version
            except RuntimeError:  # inference tensors keep no version counter
                return None
            return ("tensor", id(t), t.data_ptr(), version, t.device, t.dtype, tuple(t.shape))
        return ("value", t)

    def get(self, key_tensors: tuple, extra: tuple, make):
        """``make()``, or the value cached for the same tensors (and ``extra``)."""
        import weakref

        stamps = tuple(self._stamp(t) for t in key_tensors)
        if any(s is None for s in stamps):
            return make()
        stamp = (stamps, extra)
        entry = self._entries.get(stamp)
        if entry is not None:
            refs, value = entry
            if all(r() is not None for r in refs):
                return value
        value = make()
        refs = tuple(weakref.ref(t) for t in key_tensors if isinstance(t, torch.Tensor))
        self._entries.pop(stamp, None)
        self._entries[stamp] = (refs, value)
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))
        return value


# Shared memory per block on an H100/H200 (sm_90), used when no device can be asked.
DEFAULT_MAX_SHARED = 232_448

# Upper bounds of the shared memory a kernel's config needs, by kernel name: functions of
# a dict with the kernel's block sizes (constexprs and config values), ``elem`` (bytes of
# the operand dtype) and ``num_stages``. The autotuner prunes configs over the device's
# shared memory with them, before benchmarking; the resource check
# (``python -m gfssm.kernels.triton_compile_check``) fails where one is below what Triton
# actually allocates, so they stay upper bounds.
SHARED_ESTIMATES: dict = {}


def shared_estimate(name: str):
    """Register the shared-memory upper bound of kernel ``name``."""

    def register(fn):
        SHARED_ESTIMATES[name] = fn
        return fn

    return register


def device_shared_memory() -> int:
    """Shared memory per block of the current device (Triton's driver), or an H100's."""
    try:
        from triton.runtime.driver import driver

        device = driver.active.get_current_device()
        return int(driver.active.utils.get_device_properties(device)["max_shared_mem"])
    except Exception:  # no device to ask
        return DEFAULT_MAX_SHARED


def estimate_params(kwargs: dict, config, elem: int) -> dict:
    return {**kwargs, **config.kwargs, "elem": elem, "num_stages": config.num_stages,
            "num_warps": config.num_warps}  # fmt: skip


def prune_by_shared_memory(name: str, dtype_arg: str = "x_ptr"):
    """``early_config_prune`` for ``triton.autotune``: drops the configs whose
    shared-memory bound exceeds the device's, keeping at least the smallest one (a launch
    that cannot fit then fails loudly instead of silently using nothing)."""

    def prune(configs, named_args, **kwargs):
        elem = named_args[dtype_arg].element_size()
        estimate = SHARED_ESTIMATES[name]

        def need(config):
            return estimate(estimate_params(kwargs, config, elem))

        limit = device_shared_memory()
        kept = [c for c in configs if need(c) <= limit]
        return kept or [min(configs, key=need)]

    return prune
