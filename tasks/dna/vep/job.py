"""``gfssm eval dna-vep`` as a batch job: one work item per group of a contig's CDS (about
20,000 coding bases).

The driver reads the annotation, checks every CDS and plans the items (a group of CDS of a
contig and the regions around them); an actor fits the Markov baseline once, then per item
streams each region through the model once per strand, labels every SNV of the group's
CDS and scores it with both (position and codon scores). ``finish`` writes the table of
every variant and the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.jobs.common import file_identity, npz_arrays, npz_bytes
from gfssm.tasks.dna.settings import DnaSettings
from gfssm.tasks.dna.vep.cds import Cds
from gfssm.tasks.dna.vep.codon import markov_codon_scores, model_codon_scores
from gfssm.tasks.dna.vep.effects import CLASSES, cds_variants, uniform_aa_score
from gfssm.tasks.dna.vep.metrics import summarize, summary_metrics, summary_table
from gfssm.tasks.dna.vep.scores import baseline_rows, model_rows, region_streams, strand_mean
from gfssm.tasks.jobs import BatchJob, Log, WorkItem

VARIANTS_FILE = "variants.parquet"
SUMMARY_FILE = "summary.json"


ITEM_CODING_BASES = 20_000  # coding bases per work item: progress and resume steps


def cds_groups(cds: list[Cds], size: int = ITEM_CODING_BASES) -> list[list[Cds]]:
    """A contig's CDS in groups of about ``size`` coding bases, in contig order (one work
    item each, so that progress moves and a resumed run redoes little)."""
    groups: list[list[Cds]] = [[]]
    filled = 0
    for item in sorted(cds, key=lambda c: min(p[0] for p in c.parts)):
        if filled >= size:
            groups.append([])
            filled = 0
        groups[-1].append(item)
        filled += item.positions().size
    return groups


def cds_regions(cds: list[Cds], length: int, flank: int) -> list[tuple[int, int]]:
    """The stretches to stream: each CDS's span widened by ``flank`` (so that its first
    bases have context on both strands), clipped to the contig, overlaps merged."""
    spans = sorted(
        (max(0, int(p.min()) - flank), min(length, int(p.max()) + 1 + flank))
        for p in (c.positions() for c in cds)
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def score_contig(
    model, markov, genome: Genome, payload: dict[str, Any], codon: bool = True
) -> dict[str, np.ndarray]:
    """Every SNV of the contig's CDS with both scores; entropies of every coding base."""
    contig = payload["contig"]
    cds = [Cds.from_dict(c) for c in payload["cds"]]
    text = genome.fetch(contig, 0, genome.lengths[contig])
    variants = [cds_variants(c, text) for c in cds]
    coding = [c.positions() for c in cds]
    positions = np.unique(np.concatenate(coding))
    regions = [tuple(r) for r in payload["regions"]]
    streams = region_streams(genome, contig, regions)
    rows = {
        "model": model_rows(model, regions, streams, positions),
        "markov": baseline_rows(markov, regions, streams, positions),
    }
    ahead = {}
    if codon:
        ahead["model"] = model_codon_scores(model, cds, regions, streams)
        ahead["markov"] = markov_codon_scores(markov, cds, regions, streams)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("cds", "position", "ref", "alt")}
    out.update({k: [] for k in ("codon_pos", "effect", "ref_aa", "alt_aa", "base_codon_pos")})
    for name in rows:
        out[f"{name}_score"], out[f"{name}_entropy"] = [], []
    for name in ahead:
        out[f"{name}_codon_score"], out[f"{name}_aa_score"] = [], []
    for number, (v, bases) in enumerate(zip(variants, coding)):
        idx = np.searchsorted(positions, v.position)
        for name, r in rows.items():
            lp = r.log2_prob[idx]
            alt = np.take_along_axis(lp, v.alt[:, None].astype(np.int64), 1)[:, 0]
            ref = np.take_along_axis(lp, v.ref[:, None].astype(np.int64), 1)[:, 0]
            out[f"{name}_score"].append((alt - ref).astype(np.float32))
            if name in ahead:  # + the look-ahead over the codon, averaged over the strands
                coding = np.arange(v.position.size) // 3
                look = ahead[name].look_ahead[number][:, coding, v.alt].mean(axis=0)
                out[f"{name}_codon_score"].append((alt - ref + look).astype(np.float32))
                amino = ahead[name].amino_acid[number][:, coding, v.alt]
                out[f"{name}_aa_score"].append(strand_mean(amino).astype(np.float32))
            base_idx = np.searchsorted(positions, bases)
            out[f"{name}_entropy"].append(r.entropy_bits[base_idx].astype(np.float32))
        out["cds"].append(np.full(v.position.size, number, np.int32))
        for key in ("position", "ref", "alt", "codon_pos", "effect", "ref_aa", "alt_aa"):
            out[key].append(getattr(v, key))
        out["base_codon_pos"].append(np.tile(np.arange(1, 4, dtype=np.uint8), bases.size // 3))
    return {k: np.concatenate(v) for k, v in out.items()}


def substitution_strata(merged: dict[str, np.ndarray], minus: np.ndarray) -> np.ndarray:
    """Per variant: codon position and the change on the CDS's strand (ref -> alt) as one
    code, for AUROCs that compare like with like."""
    ref = np.where(minus, 3 - merged["ref"].astype(np.int64), merged["ref"])
    alt = np.where(minus, 3 - merged["alt"].astype(np.int64), merged["alt"])
    return merged["codon_pos"].astype(np.int64) * 16 + ref * 4 + alt


@dataclass
class VepJob(BatchJob):
    """Label and score every SNV of ``items`` (one per contig, planned by the command)."""

    genome: Genome
    annotation: Path
    fasta: Path | None
    out: Path
    items: list[dict[str, Any]]
    markov_settings: DnaSettings
    flank: int
    codon: bool = True  # also the codon score
    notes: list[str] = field(default_factory=list)
    summary_numbers: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    unit = "base"
    description = "scoring CDS variants"

    def plan(self) -> list[WorkItem]:
        return [
            WorkItem(
                f"{i:04d}", item, float(sum(len(Cds.from_dict(c).positions()) for c in item["cds"]))
            )
            for i, item in enumerate(self.items)
        ]

    def fingerprint(self) -> dict[str, Any]:
        return {
            "job": "dna eval vep",
            "annotation": file_identity(self.annotation),
            "fasta": file_identity(self.fasta),
            "items": [[item["contig"], len(item["cds"])] for item in self.items],
            "flank": self.flank,
            "codon_score": self.codon,
            "amino_acid_score": self.codon,
            "markov": self.markov_settings.model_dump(mode="json"),
        }

    def shard_dir(self) -> Path:
        return self.out / "shards"

    def summary(self) -> str | None:
        return "; ".join(self.notes) or None

    def metrics(self) -> dict[str, float]:
        return self.summary_numbers

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        from gfssm.tasks.dna.task_data import DnaData

        model, genome = loaded.model, self.genome
        markov = DnaData(self.markov_settings).markov  # once per actor

        def work(payload: dict[str, Any]) -> bytes:
            return npz_bytes(**score_contig(model, markov, genome, payload, self.codon))

        return work

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [npz_arrays(results(item.key)) for item in self.plan()]
        keys = parts[0].keys()
        merged = {k: np.concatenate([p[k] for p in parts]) for k in keys}
        # names per variant through indices: contigs, CDS (gene, strand) of each item
        contigs = list(dict.fromkeys(item["contig"] for item in self.items))
        contig_of = np.concatenate(
            [
                np.full(p["cds"].size, contigs.index(item["contig"]), np.int32)
                for item, p in zip(self.items, parts)
            ]
        )
        genes, strands, offset, cds_index = [], [], 0, []
        for item, p in zip(self.items, parts):
            cds = [Cds.from_dict(c) for c in item["cds"]]
            genes += [c.gene for c in cds]
            strands += ["+" if c.strand > 0 else "-" for c in cds]
            cds_index.append(p["cds"] + offset)
            offset += len(cds)
        cds_of = np.concatenate(cds_index)
        bases = pa.array(list("ACGT"))
        scorers = ("model", "markov") if self.codon else ()
        codon_scores = {s: merged[f"{s}_codon_score"] for s in scorers}
        aa_scores = {s: merged[f"{s}_aa_score"] for s in scorers}
        tables = np.array([c["table"] for item in self.items for c in item["cds"]])[cds_of]
        uniform = np.empty(tables.size, np.float32)
        for table_id in np.unique(tables):
            at = tables == table_id
            uniform[at] = uniform_aa_score(table_id, merged["ref_aa"][at], merged["alt_aa"][at])

        def dictionary(indices: np.ndarray, values: list[str] | pa.Array) -> pa.Array:
            return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(values))

        table = pa.table(
            {
                "contig": dictionary(contig_of, contigs),
                "pos": pa.array(merged["position"] + 1),
                "ref": dictionary(merged["ref"].astype(np.int32), bases),
                "alt": dictionary(merged["alt"].astype(np.int32), bases),
                "strand": dictionary(cds_of, strands),
                "gene": dictionary(cds_of, genes),
                "codon_pos": pa.array(merged["codon_pos"].astype(np.int8)),
                "class": dictionary(merged["effect"].astype(np.int32), list(CLASSES)),
                "ref_aa": pa.array(merged["ref_aa"].view("S1").astype(str)),
                "alt_aa": pa.array(merged["alt_aa"].view("S1").astype(str)),
                "model_score": pa.array(merged["model_score"]),
                "markov_score": pa.array(merged["markov_score"]),
                **{f"{s}_codon_score": pa.array(v) for s, v in codon_scores.items()},
                **{f"{s}_aa_score": pa.array(v) for s, v in aa_scores.items()},
            }
        )
        self.out.mkdir(parents=True, exist_ok=True)
        table_path = self.out / VARIANTS_FILE
        pq.write_table(table, table_path.with_suffix(".partial"))
        table_path.with_suffix(".partial").replace(table_path)
        summary = summarize(
            merged["effect"],
            {s: merged[f"{s}_score"] for s in ("model", "markov")},
            merged["base_codon_pos"],
            {s: merged[f"{s}_entropy"] for s in ("model", "markov")},
            strata=substitution_strata(merged, np.array([s == "-" for s in strands])[cds_of]),
            codon_scores=codon_scores,
            aa_scores=aa_scores,
            uniform_aa_score=uniform if self.codon else None,
        )
        summary.update(
            annotation=str(self.annotation),
            contigs=contigs,
            cds=offset,
            markov_order=self.markov_settings.markov_order,
            notes=self.notes,
        )
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        self.summary_numbers = summary_metrics(summary)
        log(summary_table(summary))
        log(
            f"table: {table_path} ({table.num_rows:,} variants)\nsummary: {self.out / SUMMARY_FILE}"
        )
        return 0
