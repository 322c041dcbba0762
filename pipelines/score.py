"""DNA scoring on Ray Data: whole genomes (per-base scores) and VCF variants.

Both use the DNA task's own pieces, so results equal its single-process path
(:func:`gfssm.tasks.dna.scoring.score_genome`, :func:`gfssm.tasks.dna.variants.score_vcf`):
the planner cuts the work into items, the pure per-item scorer runs in the actors, and the
task's writers store one shard per item and merge them at the end. A rerun with the same
inputs and model skips the shards already written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.pipelines.batch import (
    JsonShards,
    PoolSpec,
    file_identity,
    npz_arrays,
    npz_bytes,
    pack_model,
    progress_bar,
    run_pool,
    unpack_model,
)
from gfssm.pipelines.errors import GFSSMUserError
from gfssm.tasks.pretrained import LoadedModel, load_model


class ScoringError(GFSSMUserError, ValueError):
    pass


def _dna_model(model_dir: Path) -> LoadedModel:
    loaded = load_model(model_dir)
    if loaded.task.name != "dna":
        raise ScoringError(
            f"{model_dir}: a {loaded.task.name!r} model; genome and variant scoring need a "
            f"dna model"
        )
    return loaded


def _genome(fasta: Path, loaded: LoadedModel, aliases: dict[str, str] | None):
    from gfssm.tasks.dna import Genome

    settings = loaded.settings
    merged = {**getattr(settings, "contig_aliases", {}), **(aliases or {})}
    return Genome(
        fasta,
        cache_dir=getattr(settings, "cache_dir", None),
        convert_compressed=getattr(settings, "convert_compressed", False),
        aliases=merged,
    )


# Whole genomes ----------------------------------------------------------------------------
class GenomeScorer:
    """Actor: loads the model and opens the genome once; scores one work item per call."""

    def __init__(self, model_files, fasta, aliases, cache_dir, options, threads) -> None:
        from gfssm.tasks.dna import Genome
        from gfssm.tasks.dna.scoring import ScoringOptions

        self.loaded = unpack_model(model_files, threads)
        self.genome = Genome(fasta, cache_dir=cache_dir, aliases=aliases)
        self.options = ScoringOptions(**options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gfssm.tasks.dna.scoring import WorkItem, score_work_item

        payloads = []
        for text in batch["item"]:
            item = WorkItem.from_dict(json.loads(text))
            s = score_work_item(self.loaded.model, self.genome, item, self.options)
            payloads.append(
                npz_bytes(log2_prob=s.log2_prob, entropy_bits=s.entropy_bits, base=s.base)
            )
        return {"item": batch["item"], "payload": np.array(payloads, dtype=object)}


def score_genome(
    model_dir: Path,
    fasta: Path,
    out_dir: Path,
    *,
    regions_bed: Path | None = None,
    segment_length: int | None = None,
    warmup: int = 0,
    reverse_complement: bool = False,
    piece_length: int = 65536,
    summary_window: int = 1000,
    aliases: dict[str, str] | None = None,
    pool: PoolSpec | None = None,
    log: Callable[[str], None] = print,
    connect: Callable[[], None] = lambda: None,
):
    """Per-base log2 P and entropy of every base of ``fasta`` (or of ``regions_bed``) into
    ``out_dir/<fasta name>.*`` (bgzip bedGraphs + a per-window Parquet summary)."""
    import ray

    from gfssm.tasks.dna.regions import read_bed
    from gfssm.tasks.dna.scoring import (
        ScoringOptions,
        SegmentScores,
        ShardStore,
        WorkItem,
        check_same_run,
        merge_shards,
        model_fingerprint,
        plan_scoring,
    )

    loaded = _dna_model(model_dir)
    genome = _genome(fasta, loaded, aliases)
    regions = read_bed(regions_bed, genome) if regions_bed else None
    plan = plan_scoring(genome, regions, segment_length=segment_length, warmup=warmup)
    options = ScoringOptions(piece_length=piece_length, reverse_complement=reverse_complement)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / _stem(fasta)
    store = ShardStore(f"{prefix}.shards")
    check_same_run(store.directory, plan, options, model_fingerprint(loaded.model))
    todo = [item for item in plan if not store.is_done(item)]
    log(f"{len(plan)} work items ({len(plan) - len(todo)} already scored) in {store.directory}")
    pool = pool or PoolSpec()
    connect()  # inputs are checked: now start or join Ray
    files = ray.put(pack_model(model_dir))
    args = (
        files,
        str(genome.source),
        genome.aliases,
        str(genome.cache_dir),
        dataclasses.asdict(options),
    )
    with progress_bar(sum(i.length for i in todo), "base", "scoring") as bar:
        for row in run_pool([i.to_dict() for i in todo], GenomeScorer, args, pool):
            item = WorkItem.from_dict(json.loads(row["item"]))
            arrays = npz_arrays(row["payload"])
            store.write(
                SegmentScores(item, arrays["log2_prob"], arrays["entropy_bits"], arrays["base"])
            )
            bar.update(item.length)
    return merge_shards(plan, store, prefix, summary_window=summary_window)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna", ".gb", ".gbk", ".genbank"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "genome"


# Variants ---------------------------------------------------------------------------------
def _record_to_dict(record) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _record_from_dict(values: dict[str, Any]):
    from gfssm.tasks.dna.variants.records import Haplotypes, VariantRecord

    values = dict(values)
    values["alts"] = tuple(values["alts"])
    values["alleles"] = [Haplotypes(**h) for h in values["alleles"]]
    return VariantRecord(**values)


class VariantScorer:
    """Actor: loads the model once; scores one shard of VCF records per call."""

    def __init__(self, model_files, reverse_complement, threads) -> None:
        self.loaded = unpack_model(model_files, threads)
        self.reverse_complement = reverse_complement

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gfssm.tasks.dna.variants import score_variant_batch

        results = []
        for text in batch["item"]:
            shard = json.loads(text)
            records = [_record_from_dict(r) for r in shard["records"]]
            scores = score_variant_batch(
                self.loaded.model, records, reverse_complement=self.reverse_complement
            )
            results.append(
                json.dumps({"key": shard["key"], "scores": [dataclasses.asdict(s) for s in scores]})
            )
        return {"item": batch["item"], "result": np.array(results, dtype=object)}


def variant_prefix(out: Path) -> Path:
    """``x.vcf.gz`` / ``x.vcf`` / ``x`` -> ``x`` (outputs: ``x.vcf.gz``, ``x.variants.parquet``)."""
    name = out.name
    for suffix in (".gz", ".bgz", ".vcf"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return out.with_name(name)


def score_variants(
    model_dir: Path,
    fasta: Path,
    vcf: Path,
    out: Path,
    *,
    flank: int = 512,
    reverse_complement: bool = True,
    shard_size: int = 256,
    aliases: dict[str, str] | None = None,
    pool: PoolSpec | None = None,
    log: Callable[[str], None] = print,
    connect: Callable[[], None] = lambda: None,
):
    """``log2 P(alt window) - log2 P(ref window)`` of every VCF record into ``<out>.vcf.gz``
    (INFO fields added) and ``<out>.variants.parquet``."""
    import ray

    from gfssm.tasks.dna.scoring.genome_scoring import model_fingerprint
    from gfssm.tasks.dna.variants import VariantScore, VariantWriter, read_variants

    loaded = _dna_model(model_dir)
    genome = _genome(fasta, loaded, aliases)
    prefix = variant_prefix(out)
    records = list(read_variants(vcf, genome, flank=flank))
    groups = [records[i : i + shard_size] for i in range(0, len(records), shard_size)]
    shards = JsonShards(
        Path(f"{prefix}.shards"),
        {
            "vcf": file_identity(vcf),
            "fasta": file_identity(genome.path),
            "flank": flank,
            "reverse_complement": reverse_complement,
            "shard_size": shard_size,
            "aliases": genome.aliases,
            "model": model_fingerprint(loaded.model),
        },
    )
    keys = [f"{i:06d}" for i in range(len(groups))]
    todo = [
        {"key": k, "records": [_record_to_dict(r) for r in g]}
        for k, g in zip(keys, groups)
        if not shards.done(k)
    ]
    log(
        f"{len(records)} records in {len(groups)} shards ({len(groups) - len(todo)} already "
        f"scored) in {shards.folder}"
    )
    pool = pool or PoolSpec()
    connect()  # inputs are checked: now start or join Ray
    files = ray.put(pack_model(model_dir))
    with progress_bar(sum(len(t["records"]) for t in todo), "variant", "variants") as bar:
        for row in run_pool(todo, VariantScorer, (files, reverse_complement), pool):
            result = json.loads(row["result"])
            shards.write(result["key"], result["scores"])
            bar.update(len(result["scores"]))
    writer = VariantWriter(vcf, prefix)
    try:
        for key, group in zip(keys, groups):
            writer.write(group, [VariantScore(**s) for s in shards.read(key)])
    except BaseException:
        writer.abort()
        raise
    return writer.close()
