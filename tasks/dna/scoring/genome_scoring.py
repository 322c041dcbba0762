"""Score a whole genome in one process: plan, score each group of items (one batch) into
their shards, merge."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring.output import ScoreOutputs, merge_shards
from gfssm.tasks.dna.scoring.plan import plan_scoring
from gfssm.tasks.dna.scoring.shards import ShardStore
from gfssm.tasks.dna.scoring.stream import ScoringOptions, group_items, score_work_items

log = logging.getLogger(__name__)

#: what a shard holds; 2: a base without context gets the uniform prediction (was NaN)
SCORES_VERSION = 2


def score_genome(
    model: nn.Module,
    genome: Genome,
    prefix: str | Path,
    *,
    regions: list[Interval] | None = None,
    segment_length: int | None = None,
    warmup: int = 0,
    options: ScoringOptions | None = None,
    summary_window: int = 1000,
    progress: bool = True,
) -> ScoreOutputs:
    """Score every base of ``genome`` (or of ``regions``) and write the outputs at
    ``prefix`` (see :mod:`gfssm.tasks.dna.scoring.output`).

    Shards go to ``<prefix>.shards/``; a rerun with the same arguments skips the items
    already scored there, so an interrupted run resumes.
    """
    options = options or ScoringOptions()
    plan = plan_scoring(genome, regions, segment_length=segment_length, warmup=warmup)
    store = ShardStore(f"{prefix}.shards")
    check_same_run(store.directory, plan, options, model_fingerprint(model))
    todo = [item for item in plan if not store.is_done(item)]
    if len(todo) < len(plan):
        log.info("resuming: %d of %d items already scored", len(plan) - len(todo), len(plan))
    passes = 2 if options.reverse_complement else 1
    total = passes * sum(item.length for item in todo)
    with tqdm(
        total=total, unit="base", unit_scale=True, disable=not progress, desc="scoring"
    ) as bar:
        for group in group_items(plan, options):
            missing = [not store.is_done(item) for item in group]
            if not any(missing):
                continue
            first, last = group[0], group[-1]
            bar.set_postfix_str(f"{first.contig}:{first.start + 1:,}-{last.end:,}")
            # a group is always scored whole, so its batch (and so every float) is the
            # same as in a fresh run or a Ray worker; items already done are not rewritten
            outs = [store.open_for_writing(i) if m else None for i, m in zip(group, missing)]
            live = all(missing)  # else count the missing bases once the group is done
            results = score_work_items(
                model, genome, group, options, outs=outs, progress=bar.update if live else None
            )
            for scores, m in zip(results, missing):
                if m:
                    store.commit(scores)
            if not live:
                bar.update(passes * sum(i.length for i, m in zip(group, missing) if m))
    return merge_shards(
        plan,
        store,
        prefix,
        chrom_sizes=genome.lengths,
        summary_window=summary_window,
        reverse_complement=options.reverse_complement,
    )


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's weights, so shards of another model are never reused."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_same_run(directory: Path, plan, options: ScoringOptions, model_id: str) -> None:
    """Shards of a run with another model, plan or options must not be mixed into this one."""
    manifest = directory / "run.json"
    current = {
        "scores_version": SCORES_VERSION,
        "model": model_id,
        "options": {"reverse_complement": options.reverse_complement},
        "items": [item.to_dict() for item in plan],
    }
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != current:
            raise ValueError(
                f"{directory} holds shards of a scoring run with another model, other regions, "
                f"segments or options, or of an older gfssm; use another output prefix or "
                f"delete that folder"
            )
    else:
        manifest.write_text(json.dumps(current))
