"""Embeddings of genome regions of any length, streamed in memory that does not grow with
the region, and the files they are written to.

A causal DNA LM's hidden state at base ``i`` depends on bases ``<= i`` only. The region is
fed through the model in pieces of ``piece_length`` bases and the model's streaming cache
(the FIR inputs and scan state of every layer) carries everything earlier pieces left, so
the hidden state of each base is the one a single pass over the whole region gives, up to
float rounding (the chunked scan sums in another order). The memory of a piece is
``O(piece_length * D)``, whatever the region's length.

The embedding is the backbone's output, the final RMS-normed hidden state that the LM head
reads (``layer=None``); ``layer=k`` takes the residual stream after block ``k`` (1-based,
not normed), which is often the better feature for tasks far from next-base prediction.

A bidirectional model's state at a base depends on bases after it, so streaming cannot
equal its full pass; :func:`check_streamable` refuses such models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gfssm.tasks.jobs import TaskInputError

#: (starts (k,), ends (k,), embeddings (k, D)): rows of output, 0-based half-open coordinates
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
TokensOf = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class EmbeddingOptions:
    """``layer``: None for the final normed hidden state, else block ``1..n_layer``;
    ``window``: None for one row per base, 0 for the mean of the whole region, N for the
    mean of every N bases (the last window of a region may be shorter); ``piece_length``:
    bases per model call (memory, not results)."""

    layer: int | None = None
    window: int | None = None
    piece_length: int = 32768

    def rows(self, length: int) -> int:
        """Output rows of a region of ``length`` bases."""
        if self.window is None:
            return length
        if self.window == 0:
            return 1
        return -(-length // self.window)


def check_streamable(
    model: nn.Module, layer: int | None = None, command: str = "gfssm embed"
) -> None:
    """A :class:`~gfssm.tasks.TaskInputError` unless ``model`` is a causal LM that streams
    with a cache, and ``layer`` is one of its blocks (``command`` names the refusing one)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "embedding") or not hasattr(model, "allocate_cache"):
        raise TaskInputError(
            f"--model: a {type(model).__name__} has no token embedding and streaming "
            f"backbone; {command} needs a causal DNA language model"
        )
    if getattr(getattr(model, "config", None), "mixer", None) == "attention":
        raise TaskInputError(
            "--model: an attention model (the transformer baseline) has no streaming state; "
            f"{command} streams the genome through the model: use a gfssm or mamba2 model"
        )
    if getattr(backbone, "bidirectional", False):
        raise TaskInputError(
            "--model: a bidirectional model sees bases after each position, so an embedding "
            f"streamed in pieces would not equal its full pass; {command} needs a causal model"
        )
    n_layer = len(backbone.layers)
    if layer is not None and not 1 <= layer <= n_layer:
        raise TaskInputError(f"--layer {layer}: the model has blocks 1..{n_layer} (or 'final')")


def hidden_states(
    model: nn.Module, ids: torch.Tensor, *, cache=None, layer: int | None = None
) -> torch.Tensor:
    """ids (b, L) -> hidden states (b, L, D): the final normed state (``layer=None``) or
    the residual stream after block ``layer``; ``cache`` continues a stream (and keeps the
    state of the blocks that run)."""
    hidden = model.embedding(ids)
    if layer is None:
        return model.backbone(hidden, cache=cache)
    for i, block in enumerate(model.backbone.layers[:layer]):
        hidden = block(hidden, cache=None if cache is None else cache.layers[i])
    return hidden


def stream_hidden(
    model: nn.Module,
    tokens_of: TokensOf,
    start: int,
    end: int,
    *,
    piece_length: int = 32768,
    layer: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(first position, hidden states (n, D) float32) of ``[start, end)``, piece by piece,
    with the state of everything before each piece carried by the cache."""
    if piece_length < 1:
        raise ValueError(f"piece_length={piece_length}: expected >= 1")
    device = next(model.parameters()).device
    with torch.inference_mode():
        cache = model.allocate_cache(1, device=device)
    pos = start
    while pos < end:
        stop = min(end, pos + piece_length)
        with torch.inference_mode():
            ids = torch.from_numpy(tokens_of(pos, stop)).to(device)[None]
            hidden = hidden_states(model, ids, cache=cache, layer=layer)[0]
            piece = hidden.float().cpu().numpy()
        yield pos, piece
        pos = stop


def window_means(
    pieces: Iterator[tuple[int, np.ndarray]], start: int, end: int, window: int
) -> Iterator[Rows]:
    """Mean hidden state of every ``window`` bases of ``[start, end)`` (``window=0``: of
    the whole region), from the pieces of :func:`stream_hidden`. Windows are counted from
    ``start``; the last one ends at ``end`` and averages only its own bases. Sums are kept
    in float64, so a window's mean does not depend on where the pieces were cut."""
    size = window or (end - start)
    open_sum: np.ndarray | None = None  # (D,) float64 sum of the window still open
    open_count = 0
    for pos, hidden in pieces:
        n = len(hidden)
        rel = pos - start + np.arange(n)
        index = rel // size
        cuts = np.flatnonzero(np.diff(index)) + 1  # where a new window begins in this piece
        bounds = np.concatenate([[0], cuts])
        sums = np.add.reduceat(hidden.astype(np.float64), bounds, axis=0)  # (m, D)
        counts = np.diff(np.concatenate([bounds, [n]]))
        if open_sum is not None:
            sums[0] += open_sum
            counts[0] += open_count
        windows = index[bounds]
        # the last window of the piece stays open unless it is full or the region ends here
        last_end = min(start + (int(windows[-1]) + 1) * size, end)
        closed = len(sums) if pos + n == last_end else len(sums) - 1
        if closed:
            yield _window_rows(windows[:closed], sums[:closed], counts[:closed], start, end, size)
        if closed < len(sums):
            open_sum, open_count = sums[-1], int(counts[-1])
        else:
            open_sum, open_count = None, 0


def _window_rows(
    windows: np.ndarray, sums: np.ndarray, counts: np.ndarray, start: int, end: int, size: int
) -> Rows:
    starts = start + windows.astype(np.int64) * size
    ends = np.minimum(starts + size, end)
    return starts, ends, (sums / counts[:, None]).astype(np.float32)


def embed_region(
    model: nn.Module, tokens_of: TokensOf, start: int, end: int, options: EmbeddingOptions
) -> Iterator[Rows]:
    """Output rows of ``[start, end)``: one per base (``window=None``) or per window."""
    pieces = stream_hidden(
        model, tokens_of, start, end, piece_length=options.piece_length, layer=options.layer
    )
    if options.window is None:
        for pos, hidden in pieces:
            starts = np.arange(pos, pos + len(hidden), dtype=np.int64)
            yield starts, starts + 1, hidden
    else:
        yield from window_means(pieces, start, end, options.window)


# Output files --------------------------------------------------------------------------
PARTIAL = ".partial"


class NpyWriter:
    """One region's rows as an ``(rows, D)`` ``.npy``, written through a memory map into
    ``<path>.partial`` and renamed when complete (a file that exists is whole)."""

    def __init__(self, path: Path, rows: int, dim: int, dtype: str) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL)
        self.array = np.lib.format.open_memmap(
            self.partial, mode="w+", dtype=dtype, shape=(rows, dim)
        )
        self.filled = 0

    def write(self, rows: Rows) -> None:
        values = rows[2]
        self.array[self.filled : self.filled + len(values)] = values
        self.filled += len(values)

    def close(self) -> None:
        if self.filled != len(self.array):
            raise RuntimeError(f"{self.path}: {self.filled} of {len(self.array)} rows written")
        self.array.flush()
        del self.array
        os.replace(self.partial, self.path)


class ParquetWriter:
    """Rows of one or more regions as one Parquet file with columns ``name``, ``contig``,
    ``start``, ``end`` (0-based, half-open) and ``embedding`` (fixed-size list of D
    floats); row groups of about ``group_bytes`` so memory stays bounded."""

    def __init__(self, path: Path, dim: int, dtype: str, group_bytes: int = 32 << 20) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.dim, self.dtype = pa, dim, np.dtype(dtype)
        value_type = pa.float16() if self.dtype == np.float16 else pa.float32()
        self.schema = pa.schema(
            [
                ("name", pa.string()),
                ("contig", pa.string()),
                ("start", pa.int64()),
                ("end", pa.int64()),
                ("embedding", pa.list_(value_type, dim)),
            ]
        )
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL)
        self.writer = pq.ParquetWriter(self.partial, self.schema)
        self.group_rows = max(1, group_bytes // max(1, dim * self.dtype.itemsize))
        self.pending: list[tuple[str, str, Rows]] = []
        self.pending_rows = 0

    def write(self, name: str, contig: str, rows: Rows) -> None:
        self.pending.append((name, contig, rows))
        self.pending_rows += len(rows[0])
        if self.pending_rows >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        pa = self.pa
        # one entry per pending batch, repeated per row by index (no Python list per row)
        which = pa.array(
            np.repeat(np.arange(len(self.pending)), [len(r[0]) for *_, r in self.pending])
        )
        names = pa.array([n for n, _, _ in self.pending], pa.string()).take(which)
        contigs = pa.array([c for _, c, _ in self.pending], pa.string()).take(which)
        values = np.concatenate([r[2] for _, _, r in self.pending]).astype(self.dtype)
        flat = pa.array(values.reshape(-1))
        table = pa.table(
            {
                "name": names,
                "contig": contigs,
                "start": np.concatenate([r[0] for _, _, r in self.pending]),
                "end": np.concatenate([r[1] for _, _, r in self.pending]),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim),
            },
            schema=self.schema,
        )
        self.writer.write_table(table)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.partial, self.path)
