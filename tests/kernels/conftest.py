"""Kernel tests run Triton in its CPU interpreter when no GPU is visible.

Triton fixes compile-or-interpret when it is imported (its own ``@jit`` helpers are
decorated then), so ``TRITON_INTERPRET=1`` is set here, before any test module of this
folder imports triton. It changes nothing for CPU code paths, and a GPU machine keeps
compiling (set ``TRITON_INTERPRET=1`` yourself to test the interpreter path there).
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
