"""Write variant scores: the input VCF with INFO fields added, and a Parquet table.

Records must be given in VCF order (the writer walks the input VCF alongside). The VCF is
bgzipped and, when its records are sorted, tabix-indexed (``.tbi``). The table has one row
per ALT allele (a multi-allelic record is split), and ``counts`` counts those rows by
status. Outputs go to ``.partial`` files renamed at :meth:`VariantWriter.close`, so a
failed run never replaces earlier outputs.
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

from gfssm.tasks.dna.fasta_format import notice
from gfssm.tasks.dna.variants.effect import VariantScore
from gfssm.tasks.dna.variants.records import (
    SKIP_REASONS,
    UNSUPPORTED_ALLELE,
    VariantRecord,
    is_bcf,
    open_vcf,
    quiet_htslib,
    readable_vcf,
)

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
    """``counts``: table rows (one per ALT allele) by status; ``index``: the VCF's ``.tbi``
    (None when the input's records are not sorted, which tabix needs)."""

    vcf: Path
    table: Path
    counts: Counter = field(default_factory=Counter)
    index: Path | None = None


class VariantWriter:
    """Annotated VCF (bgzip) and Parquet table at ``prefix``, filled batch by batch."""

    def __init__(
        self,
        vcf_in: str | Path,
        prefix: str | Path,
        contig_lengths: dict[str, int] | None = None,
        *,
        cache_dir: str | Path | None = None,
    ) -> None:
        """``contig_lengths``: lengths of the VCF's contig names, for ##contig lines that a
        headerless VCF lacks (htslib cannot write records of undeclared contigs);
        ``cache_dir``: where a gzip/bzip2/xz/zstd VCF's bgzip copy is (see
        :func:`~gfssm.tasks.dna.variants.records.readable_vcf`)."""
        source = readable_vcf(vcf_in, cache_dir)
        self.vcf_path = Path(f"{prefix}.vcf.gz")
        self.table_path = Path(f"{prefix}.variants.parquet")
        self.vcf_path.parent.mkdir(parents=True, exist_ok=True)
        self._partial_vcf = Path(f"{prefix}.partial.vcf.gz")
        self._partial_table = Path(f"{self.table_path}.partial")
        self._reader = open_vcf(source, shown=vcf_in)
        header = self._reader.header.copy()
        for name in sorted(_record_contigs(source) - set(header.contigs)):
            length = (contig_lengths or {}).get(name)
            if length:
                header.contigs.add(name, length=length)
            else:
                header.contigs.add(name)
        if "END" not in header.info:  # htslib writes END for symbolic alleles
            header.info.add("END", "1", "Integer", "End position of the variant")
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
        self._index_partial = Path(f"{self._partial_vcf}.tbi")
        self._writer = pysam.VariantFile(str(self._partial_vcf), "wz", header=header)
        self._records = iter(self._reader)
        self._table = pq.ParquetWriter(str(self._partial_table), TABLE_SCHEMA)
        self.counts: Counter = Counter()

    def write(self, records: list[VariantRecord], scores: list[VariantScore]) -> None:
        by_number = {s.number: s for s in scores}
        rows = []
        with quiet_htslib():
            for record in records:
                rec = next(self._records).copy()
                rec.translate(self._writer.header)
                score = by_number.get(record.number)
                if record.skip or score is None:
                    status = record.skip or "NOT_SCORED"
                    rec.info[INFO_SKIP] = status
                    for alt in record.alts or ("",):
                        self.counts[status] += 1
                        rows.append(_row(record, alt, math.nan, math.nan, math.nan, status))
                else:
                    rows += self._scored(rec, record, score)
                self._writer.write(rec)
        if rows:
            self._table.write_table(pa.Table.from_pylist(rows, TABLE_SCHEMA))

    def _scored(self, rec, record: VariantRecord, score: VariantScore) -> list[dict]:
        """INFO values per ALT (missing for an ALT that was not scored) and table rows."""
        at = {allele.index: j for j, allele in enumerate(record.alleles)}
        nan = math.nan
        llr, fwd, rev = [], [], []
        for i in range(len(record.alts)):
            j = at.get(i)
            llr.append(score.llr[j] if j is not None else nan)
            fwd.append(score.llr_forward[j] if j is not None else nan)
            rev.append(score.llr_reverse[j] if j is not None and score.llr_reverse else nan)
        rec.info[INFO_SCORE] = _info(llr)
        rec.info[INFO_FORWARD] = _info(fwd)
        if score.llr_reverse:
            rec.info[INFO_REVERSE] = _info(rev)
        if len(at) < len(record.alts):
            rec.info[INFO_SKIP] = UNSUPPORTED_ALLELE
        rows = []
        for i, alt in enumerate(record.alts):
            status = "scored" if i in at else UNSUPPORTED_ALLELE
            self.counts[status] += 1
            rows.append(_row(record, alt, llr[i], fwd[i], rev[i], status))
        return rows

    def close(self) -> VariantOutputs:
        self._writer.close()
        self._reader.close()
        self._table.close()
        index: Path | None = Path(f"{self.vcf_path}.tbi")
        try:
            with quiet_htslib():
                pysam.tabix_index(str(self._partial_vcf), preset="vcf", force=True)
        except (OSError, ValueError) as err:
            index = None
            notice(
                f"{self.vcf_path}: not indexed, tabix needs records sorted by position "
                f"({err}); sort the input VCF (e.g. `bcftools sort`) for a .tbi"
            )
        os.replace(self._partial_table, self.table_path)
        if index is not None:
            os.replace(self._index_partial, index)
        else:
            Path(f"{self.vcf_path}.tbi").unlink(missing_ok=True)  # it would index older data
        os.replace(self._partial_vcf, self.vcf_path)
        return VariantOutputs(self.vcf_path, self.table_path, self.counts, index)

    def abort(self) -> None:
        """Close without replacing earlier outputs (partial files are left for inspection)."""
        for handle in (self._writer, self._reader, self._table):
            with contextlib.suppress(Exception):  # already failing; keep the original error
                handle.close()


def _info(values: list[float]) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(v) else round(v, 4) for v in values)


def _record_contigs(path: Path) -> set[str]:
    """The CHROM values of a text VCF (plain or bgzip); empty for BCF, whose header must
    declare them anyway."""
    if is_bcf(path):
        return set()
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
