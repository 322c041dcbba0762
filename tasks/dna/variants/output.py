"""Write variant scores: the input VCF with INFO fields added, and a Parquet table.

Records must be given in VCF order (the writer walks the input VCF alongside). Outputs go
to ``.partial`` files renamed at :meth:`VariantWriter.close`, so a failed run never
replaces earlier outputs.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pysam

from gfssm.tasks.dna.variants.effect import VariantScore
from gfssm.tasks.dna.variants.records import SKIP_REASONS, VariantRecord, open_vcf

INFO_SCORE = "GFSSM_LLR"
INFO_FORWARD = "GFSSM_LLR_FWD"
INFO_REVERSE = "GFSSM_LLR_RC"
INFO_SKIP = "GFSSM_SKIP"
TABLE_SCHEMA = pa.schema(
    [
        ("record", pa.int64()),
        ("line", pa.int64()),
        ("chrom", pa.string()),
        ("pos", pa.int64()),
        ("id", pa.string()),
        ("ref", pa.string()),
        ("alt", pa.string()),
        ("llr", pa.float64()),
        ("llr_forward", pa.float64()),
        ("llr_reverse", pa.float64()),
        ("status", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass
class VariantOutputs:
    vcf: Path
    table: Path
    counts: Counter = field(default_factory=Counter)


class VariantWriter:
    """Annotated VCF (bgzip) and Parquet table at ``prefix``, filled batch by batch."""

    def __init__(
        self, vcf_in: str | Path, prefix: str | Path, contig_lengths: dict[str, int] | None = None
    ) -> None:
        """``contig_lengths``: lengths of the VCF's contig names, for ##contig lines that a
        headerless VCF lacks (htslib cannot write records of undeclared contigs)."""
        self.vcf_path = Path(f"{prefix}.vcf.gz")
        self.table_path = Path(f"{prefix}.variants.parquet")
        self.vcf_path.parent.mkdir(parents=True, exist_ok=True)
        self._partial_vcf = Path(f"{prefix}.partial.vcf.gz")
        self._partial_table = Path(f"{self.table_path}.partial")
        self._reader = open_vcf(vcf_in)
        header = self._reader.header.copy()
        for name in _record_contigs(Path(vcf_in)) - set(header.contigs):
            length = (contig_lengths or {}).get(name)
            if length:
                header.contigs.add(name, length=length)
            else:
                header.contigs.add(name)
        header.info.add(
            INFO_SCORE,
            "A",
            "Float",
            "GFSSM log2 P(alt window) - log2 P(ref window), mean of both strands",
        )
        header.info.add(INFO_FORWARD, "A", "Float", "the same on the forward strand only")
        header.info.add(INFO_REVERSE, "A", "Float", "the same on the reverse strand only")
        reasons = "; ".join(f"{k}: {v}" for k, v in SKIP_REASONS.items())
        header.info.add(INFO_SKIP, "1", "String", f"not scored because: {reasons}")
        self._writer = pysam.VariantFile(str(self._partial_vcf), "wz", header=header)
        self._records = iter(self._reader)
        self._table = pq.ParquetWriter(str(self._partial_table), TABLE_SCHEMA)
        self.counts: Counter = Counter()

    def write(self, records: list[VariantRecord], scores: list[VariantScore]) -> None:
        by_number = {s.number: s for s in scores}
        rows = []
        for record in records:
            rec = next(self._records).copy()
            rec.translate(self._writer.header)
            score = by_number.get(record.number)
            if record.skip or score is None:
                rec.info[INFO_SKIP] = record.skip or "NOT_SCORED"
                self.counts[record.skip or "NOT_SCORED"] += 1
                for alt in record.alts or ("",):
                    rows.append(
                        _row(record, alt, math.nan, math.nan, math.nan, record.skip or "NOT_SCORED")
                    )
            else:
                rec.info[INFO_SCORE] = tuple(round(v, 4) for v in score.llr)
                rec.info[INFO_FORWARD] = tuple(round(v, 4) for v in score.llr_forward)
                if score.llr_reverse:
                    rec.info[INFO_REVERSE] = tuple(round(v, 4) for v in score.llr_reverse)
                self.counts["scored"] += 1
                for i, alt in enumerate(record.alts):
                    reverse = score.llr_reverse[i] if score.llr_reverse else math.nan
                    rows.append(
                        _row(record, alt, score.llr[i], score.llr_forward[i], reverse, "scored")
                    )
            self._writer.write(rec)
        if rows:
            self._table.write_table(pa.Table.from_pylist(rows, TABLE_SCHEMA))

    def close(self) -> VariantOutputs:
        self._writer.close()
        self._reader.close()
        self._table.close()
        os.replace(self._partial_table, self.table_path)
        os.replace(self._partial_vcf, self.vcf_path)
        return VariantOutputs(self.vcf_path, self.table_path, self.counts)

    def abort(self) -> None:
        """Close without replacing earlier outputs (partial files are left for inspection)."""
        for handle in (self._writer, self._reader, self._table):
            with contextlib.suppress(Exception):  # already failing; keep the original error
                handle.close()


def _record_contigs(path: Path) -> set[str]:
    """The CHROM values of a text VCF (plain or bgzip); empty for BCF, whose header must
    declare them anyway."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    names: set[str] = set()
    try:
        with opener(path, "rb") as handle:
            for line in handle:
                if not line.startswith(b"#"):
                    names.add(line.split(b"\t", 1)[0].decode())
    except (OSError, EOFError, UnicodeDecodeError):
        return set()
    return names


def _row(record: VariantRecord, alt: str, llr, fwd, rev, status: str) -> dict:
    return {
        "record": record.number,
        "line": record.line,
        "chrom": record.chrom,
        "pos": record.pos,
        "id": record.id,
        "ref": record.ref,
        "alt": alt,
        "llr": llr,
        "llr_forward": fwd,
        "llr_reverse": rev,
        "status": status,
        "detail": record.detail,
    }
