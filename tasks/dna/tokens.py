"""One token per base: A, C, G, T, N plus a few specials.

IUPAC ambiguity codes (R, Y, S, W, K, M, B, D, H, V) become N. Lowercase (soft-masked)
bases keep their base token and are flagged in a separate mask that a loss can weight.
Any other character is an error naming the contig and position.

``A=0, C=1, G=2, T=3`` so that the complement of a base token ``t < 4`` is ``3 - t``.
"""

from __future__ import annotations

import numpy as np

from gfssm.tasks.jobs import TaskInputError

BASES = "ACGT"
A, C, G, T, N = 0, 1, 2, 3, 4
PAD, BOS, EOS = 5, 6, 7
TOKEN_NAMES = ("A", "C", "G", "T", "N", "<pad>", "<bos>", "<eos>")
VOCAB_SIZE = len(TOKEN_NAMES)
N_BASES = 4
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"
ALLOWED_BYTES = (BASES + BASES.lower() + IUPAC_AMBIGUOUS + IUPAC_AMBIGUOUS.lower()).encode()


class InvalidBaseError(TaskInputError):
    """A sequence holds a character that is not a nucleotide or IUPAC code."""


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    ids = np.full(256, -1, dtype=np.int16)
    soft = np.zeros(256, dtype=bool)
    for i, base in enumerate(BASES):
        ids[ord(base)] = i
        ids[ord(base.lower())] = i
        soft[ord(base.lower())] = True
    for code in IUPAC_AMBIGUOUS:
        ids[ord(code)] = N
        ids[ord(code.lower())] = N
        soft[ord(code.lower())] = True
    ids.setflags(write=False)
    soft.setflags(write=False)
    return ids, soft


TOKEN_OF_BYTE, SOFTMASK_OF_BYTE = _lookup_tables()
COMPLEMENT = np.array([T, G, C, A, N, PAD, BOS, EOS], dtype=np.int64)


def encode(
    sequence: str | bytes, *, contig: str = "?", start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (L,) int64 and soft-mask flags (L,) bool of ``sequence``.

    ``contig`` and ``start`` (0-based offset of ``sequence`` in the contig) only serve the
    error message of an invalid character.
    """
    raw = np.frombuffer(
        sequence.encode("ascii", "replace") if isinstance(sequence, str) else sequence,
        dtype=np.uint8,
    )
    ids = TOKEN_OF_BYTE[raw]
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        pos = start + int(bad[0])
        char = bytes(raw[bad[0] : bad[0] + 1]).decode("latin-1")
        raise InvalidBaseError(
            f"contig {contig!r} position {pos + 1} (1-based): character {char!r} is not a "
            f"nucleotide; expected A, C, G, T, N or an IUPAC code (either case)"
            + (f"; {bad.size} invalid characters in this stretch" if bad.size > 1 else "")
        )
    return ids.astype(np.int64), SOFTMASK_OF_BYTE[raw]


def decode(tokens: np.ndarray) -> str:
    """Bases of tokens (L,) as an uppercase string (specials as ``?``)."""
    table = np.frombuffer(b"ACGTN???", dtype=np.uint8)
    return table[np.asarray(tokens, dtype=np.int64)].tobytes().decode()


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """Reverse complement of tokens (..., L) along the last axis; N stays N."""
    return COMPLEMENT[np.asarray(tokens, dtype=np.int64)][..., ::-1].copy()


def reverse_complement_text(sequence: str) -> str:
    return sequence.translate(_RC_TEXT)[::-1]


_RC_TEXT = str.maketrans("ACGTRYKMBDHVNacgtrykmbdhvnSWsw", "TGCAYRMKVHDBNtgcayrmkvhdbnSWsw")
