"""Variant effect: ``log2 P(alt window) - log2 P(ref window)`` under the model.

A pure function of (model, records): the same records give the same scores wherever they
are scored. Windows are padded to a multiple of ``bucket`` bases, so a window's score does
not depend on which other windows share its batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.tokens import N_BASES, PAD, encode, reverse_complement_text
from gfssm.tasks.dna.variants.records import VariantRecord

LOG2E = 1.0 / float(np.log(2.0))


@dataclass
class VariantScore:
    """Per scored ALT allele of record ``number`` (in the order of ``record.alleles``): the
    score averaged over both strands, and each strand's (bits). Empty lists for a skipped
    record."""

    number: int
    llr: list[float]
    llr_forward: list[float]
    llr_reverse: list[float]


@torch.inference_mode()
def sequence_log2_probs(
    model: nn.Module, sequences: list[str], *, bucket: int = 64, max_batch: int = 64
) -> np.ndarray:
    """(k,) sum over positions 1..len-1 of log2 P(base | earlier bases) for each sequence
    (positions whose base is N add nothing)."""
    device = next(model.parameters()).device
    out = np.zeros(len(sequences))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, seq in enumerate(sequences):
        groups[-(-len(seq) // bucket) * bucket].append(i)
    for length, members in sorted(groups.items()):
        for first in range(0, len(members), max_batch):
            chunk = members[first : first + max_batch]
            ids = np.full((len(chunk), length), PAD, np.int64)
            for row, i in enumerate(chunk):
                tokens, _ = encode(sequences[i], contig="variant window")
                ids[row, : tokens.size] = tokens
            x = torch.from_numpy(ids).to(device)
            logp = base_log_probs(model(x))[:, :-1]  # predictions of positions 1..
            target = x[:, 1:]
            scored = target < N_BASES
            picked = logp.gather(-1, target.clamp_max(N_BASES - 1).unsqueeze(-1)).squeeze(-1)
            sums = (picked.double() * scored).sum(dim=1).cpu().numpy() * LOG2E
            out[chunk] = sums
    return out


def score_variant_batch(
    model: nn.Module, records: list[VariantRecord], *, reverse_complement: bool = True
) -> list[VariantScore]:
    """Scores of ``records`` (skipped records get empty lists)."""
    was_training = model.training
    model.eval()
    sequences: list[str] = []
    for record in records:
        for allele in record.alleles:
            sequences += [allele.ref_window, allele.alt_window]
            if reverse_complement:
                sequences += [
                    reverse_complement_text(allele.ref_window),
                    reverse_complement_text(allele.alt_window),
                ]
    try:
        logp = sequence_log2_probs(model, sequences) if sequences else np.zeros(0)
    finally:
        model.train(was_training)
    per_allele = 4 if reverse_complement else 2
    out, at = [], 0
    for record in records:
        fwd, rev, avg = [], [], []
        for _ in record.alleles:
            values = logp[at : at + per_allele]
            at += per_allele
            forward = float(values[1] - values[0])
            fwd.append(forward)
            if reverse_complement:
                reverse = float(values[3] - values[2])
                rev.append(reverse)
                avg.append(0.5 * (forward + reverse))
            else:
                avg.append(forward)
        out.append(VariantScore(record.number, avg, fwd, rev))
    return out
