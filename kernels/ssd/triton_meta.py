"""Host-side layout of a packed batch for the Triton scan: small int32 tensors the kernels
read instead of recomputing sequence boundaries (spec section 4) in every program.

All of it is O(b * L) integer work, tiny next to the scan, and needs no host sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gfssm.kernels.ssd.segments import Segments, segments_of


@dataclass(frozen=True)
class ScanLayout:
    """Where sequences and initial tokens lie, for rows of length L cut in chunks of Q.

    seg:    (b, L) int32 segment id (0 = each row's first sequence), or None when unpacked.
    pos:    (b, L) int32 position inside the sequence, counting tokens the stream had seen
            before (initial state); None when there is no initial-token sink (n_init = 0).
    chunks: (b, nc, 4) int32 per chunk, or None when n_init = 0:
            [0] first row (global index) of the initial tokens of the chunk's *last*
                sequence that lie in the chunk, [1] how many (they feed the carried sink I);
            [2] first row of the initial tokens of the sequence *entering* the chunk that
                lie in earlier chunks, [3] how many (the chunk reads them through I).
    seen:   (b,) int64 tokens seen by each row's last sequence after the row.
    segments: the int64 :class:`Segments` the above were derived from.
    """

    length: int
    chunk: int
    nchunks: int
    seg: torch.Tensor | None
    pos: torch.Tensor | None
    chunks: torch.Tensor | None
    seen: torch.Tensor
    segments: Segments


def scan_layout(
    seq_idx: torch.Tensor | None,
    batch: int,
    length: int,
    chunk: int,
    n_init: int,
    device: torch.device,
    seen: torch.Tensor | None,
) -> ScanLayout:
    segs = segments_of(seq_idx, batch, length, device, seen)
    nchunks = -(-length // chunk)
    seg = segs.ids.to(torch.int32).contiguous() if seq_idx is not None else None
    if n_init == 0:
        return ScanLayout(length, chunk, nchunks, seg, None, None, segs.final_seen(), segs)

    first = torch.arange(nchunks, device=device) * chunk  # (nc,) first row of each chunk
    end = torch.clamp(first + chunk, max=length)  # one past the last row

    def init_rows(row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start of the sequence holding ``row`` (b, nc) and one past its initial tokens."""
        start = segs.start[:, row]
        pos0 = torch.gather(segs.pos, 1, start)  # position of the sequence's first row
        return start, start + torch.clamp(n_init - pos0, min=0)

    last_start, last_init_end = init_rows(end - 1)
    fi_lo = torch.maximum(last_start, first)
    fi_cnt = torch.clamp(torch.minimum(last_init_end, end) - fi_lo, min=0)

    enter_start, enter_init_end = init_rows(torch.clamp(first - 1, min=0))
    pre_cnt = torch.clamp(torch.minimum(enter_init_end, first) - enter_start, min=0)
    pre_cnt = torch.where(first > 0, pre_cnt, torch.zeros_like(pre_cnt))
    chunks = torch.stack([fi_lo, fi_cnt, enter_start, pre_cnt], dim=-1).to(torch.int32)
    return ScanLayout(
        length,
        chunk,
        nchunks,
        seg,
        segs.pos.to(torch.int32).contiguous(),
        chunks.contiguous(),
        segs.final_seen(),
        segs,
    )
