"""Every single-base change of a CDS, labelled by its effect on the protein.

Codons are translated with the CDS's genetic code (Biopython's NCBI tables). Classes:

- ``synonymous``, ``missense``, ``stop_gained``: the classes the AUROCs compare;
- ``stop_lost`` (a stop codon becomes a sense codon), ``stop_retained`` (a stop codon
  stays a stop codon);
- ``start_codon``: any change in the first codon of a CDS with a complete 5' end: the
  initiator codon is read as methionine whatever it is (GTG, TTG, ...), so translation
  says nothing useful about it; kept in the table, left out of the AUROCs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from Bio.Data import CodonTable

from gfssm.tasks.dna.tokens import BASES, encode
from gfssm.tasks.dna.vep.cds import Cds

CLASSES = ("synonymous", "missense", "stop_gained", "stop_lost", "stop_retained", "start_codon")
SYNONYMOUS, MISSENSE, STOP_GAINED, STOP_LOST, STOP_RETAINED, START_CODON = range(len(CLASSES))
STOP = ord("*")


@cache
def amino_acids(table: int) -> np.ndarray:
    """(64,) uint8: the amino acid letter (``*`` for stop) of codon ``16*b1 + 4*b2 + b3``
    (bases A=0 C=1 G=2 T=3) under NCBI genetic code ``table``."""
    code = CodonTable.unambiguous_dna_by_id[table]
    out = np.zeros(64, np.uint8)
    for i in range(64):
        codon = BASES[i // 16] + BASES[i // 4 % 4] + BASES[i % 4]
        out[i] = STOP if codon in code.stop_codons else ord(code.forward_table[codon])
    return out


def uniform_aa_score(table: int, ref_aa: np.ndarray, alt_aa: np.ndarray) -> np.ndarray:
    """The amino-acid score of a scorer that finds all 64 codons equally likely:
    log2(codons of alt_aa / codons of ref_aa) (letters as uint8, stop ``*``), the part of
    an amino-acid score that the genetic code alone explains."""
    counts = np.bincount(amino_acids(table), minlength=256)
    return np.log2(counts[alt_aa] / counts[ref_aa]).astype(np.float32)


@dataclass
class CdsVariants:
    """The 3 alternative bases at every coding base of one CDS, flattened (3 * n rows).

    ``position``: genomic, 0-based; ``ref``/``alt``: base tokens on the + strand;
    ``codon_pos``: 1..3 on the CDS's strand; ``effect``: index into :data:`CLASSES`;
    ``ref_aa``/``alt_aa``: amino-acid letters as bytes."""

    position: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    codon_pos: np.ndarray
    effect: np.ndarray
    ref_aa: np.ndarray
    alt_aa: np.ndarray


def cds_variants(cds: Cds, contig_text: str) -> CdsVariants:
    """Every SNV of ``cds`` (whose checks passed: whole codons of A/C/G/T)."""
    positions = cds.positions()
    coding = encode(cds.coding_text(contig_text))[0]  # on the CDS's strand
    n = coding.size
    codons = coding.reshape(-1, 3)
    weights = np.array([16, 4, 1])
    ref_index = codons @ weights  # (n/3,)
    aa = amino_acids(cds.table)
    ref_aa = np.repeat(aa[ref_index], 3)  # per coding base
    codon_pos = np.tile(np.arange(3), n // 3)
    # alternative base k (1..3) at each coding base: (base + k) % 4, on the CDS strand
    shifts = np.arange(1, 4)
    alt_coding = (coding[:, None] + shifts[None, :]) % 4  # (n, 3)
    delta = (alt_coding - coding[:, None]) * weights[codon_pos][:, None]
    alt_index = np.repeat(ref_index, 3)[:, None] + delta
    alt_aa = aa[alt_index]  # (n, 3)
    ref_aa3 = np.broadcast_to(ref_aa[:, None], alt_aa.shape)
    effect = np.where(alt_aa == ref_aa3, SYNONYMOUS, MISSENSE)
    effect = np.where((alt_aa == STOP) & (ref_aa3 != STOP), STOP_GAINED, effect)
    effect = np.where((ref_aa3 == STOP) & (alt_aa != STOP), STOP_LOST, effect)
    effect = np.where((ref_aa3 == STOP) & (alt_aa == STOP), STOP_RETAINED, effect)
    if cds.complete_start:
        effect[:3] = START_CODON
    minus = cds.strand < 0
    ref_plus = 3 - coding if minus else coding  # tokens: the complement of t is 3 - t
    alt_plus = 3 - alt_coding if minus else alt_coding
    return CdsVariants(
        position=np.repeat(positions, 3),
        ref=np.repeat(ref_plus, 3).astype(np.uint8),
        alt=alt_plus.reshape(-1).astype(np.uint8),
        codon_pos=np.repeat(codon_pos + 1, 3).astype(np.uint8),
        effect=effect.reshape(-1).astype(np.uint8),
        ref_aa=np.repeat(ref_aa, 3),
        alt_aa=alt_aa.reshape(-1),
    )
