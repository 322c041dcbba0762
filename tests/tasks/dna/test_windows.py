"""Training windows: deterministic per (seed, rank, world_size, step), weighted by length,
never overlapping validation."""

import itertools

import numpy as np
import pytest
import torch

from gfssm.tasks import get_task
from gfssm.tasks.dna.regions import Interval, subtract
from gfssm.tasks.dna.tokens import encode, reverse_complement_text
from gfssm.tasks.dna.windows import IGNORE_INDEX


def settings_for(path, **kw):
    return get_task("dna").settings({"fasta": str(path), "window_length": 128, **kw})


def take(task, settings, n, **kw):
    return list(itertools.islice(task.train_batches(settings, **kw), n))


def test_same_seed_same_batches_and_resume_continues(lambda_fasta):
    task = get_task("dna")
    s = settings_for(lambda_fasta)
    run = take(task, s, 5, seed=3, rank=0, world_size=1, batch_size=4)
    again = take(get_task("dna"), s, 5, seed=3, rank=0, world_size=1, batch_size=4)
    resumed = take(task, s, 2, seed=3, rank=0, world_size=1, batch_size=4, start_step=3)
    other_seed = take(task, s, 1, seed=4, rank=0, world_size=1, batch_size=4)
    for a, b in zip(run, again):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(run[3:], resumed):
        assert torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(run[0]["input_ids"], other_seed[0]["input_ids"])
    assert not torch.equal(run[0]["input_ids"], run[1]["input_ids"])


def test_ranks_split_the_global_batch(lambda_fasta):
    task = get_task("dna")
    s = settings_for(lambda_fasta)
    whole = take(task, s, 2, seed=0, rank=0, world_size=1, batch_size=6)
    parts = [take(task, s, 2, seed=0, rank=r, world_size=3, batch_size=2) for r in range(3)]
    for step in range(2):
        joined = torch.cat([parts[r][step]["input_ids"] for r in range(3)])
        assert torch.equal(joined, whole[step]["input_ids"])


def test_training_windows_never_overlap_validation(two_contig_fasta):
    task = get_task("dna")
    for extra in ({"val_fraction": 0.2}, {"val_contigs": ("right",)}):
        s = settings_for(two_contig_fasta, window_length=256, **extra)
        data = task.data(s)
        validation = data.split.validation
        assert validation and data.validation
        for w in data.validation:  # validation windows lie inside validation regions
            assert any(
                v.contig == w.contig and v.start <= w.start and w.end <= v.end for v in validation
            )
        hits = {"left": 0, "right": 0}
        for step in range(300):
            for i in range(4):
                w, _, _ = data.training.sample(7, step, i)
                hits[w.contig] += 1
                inside = Interval(w.contig, w.start, w.end)
                assert subtract([inside], validation) == [inside], (w, validation)
        if "val_contigs" in extra:
            assert hits == {"left": 1200, "right": 0}
        else:
            # weighted by usable length: left 24,000-255 vs right 14,802-255 starts
            assert 0.55 < hits["left"] / 1200 < 0.7


def test_windows_read_the_genome_and_its_reverse_complement(lambda_fasta, lambda_text):
    task = get_task("dna")
    data = task.data(settings_for(lambda_fasta, rc_augment=True))
    directions = set()
    for i in range(20):
        w, tokens, _ = data.training.sample(1, 0, i)
        text = lambda_text[w.start : w.end]
        expected, _ = encode(reverse_complement_text(text) if w.reverse else text)
        np.testing.assert_array_equal(tokens, expected)
        directions.add(w.reverse)
    assert directions == {True, False}
    plain = task.data(settings_for(lambda_fasta, rc_augment=False))
    assert not any(plain.training.sample(1, 0, i)[0].reverse for i in range(20))


def test_batch_is_next_base_with_n_ignored_and_softmask_weighted(tmp_path, lambda_text):
    text = lambda_text[:200].lower() + "N" * 10 + lambda_text[200:1000]
    path = tmp_path / "masked.fa"
    path.write_text(">m\n" + "\n".join(text[i : i + 60] for i in range(0, len(text), 60)) + "\n")
    task = get_task("dna")
    s = settings_for(
        path, window_length=1010, val_fraction=0.0, softmask_weight=0.25, rc_augment=False
    )
    batch = next(task.train_batches(s, seed=0, rank=0, world_size=1, batch_size=1))
    ids, _ = encode(text)
    assert torch.equal(batch["input_ids"][0], torch.from_numpy(ids[:-1]))
    labels, weight = batch["labels"][0], batch["loss_weight"][0]
    # label t is base t+1: lowercase bases 1..199, N at 200..209
    assert (labels[199:209] == IGNORE_INDEX).all() and (weight[199:209] == 0).all()
    assert (weight[:199] == 0.25).all() and (weight[209:] == 1.0).all()
    assert torch.equal(labels[209:], torch.from_numpy(ids[210:]))


def test_n_rich_windows_are_skipped(tmp_path, lambda_text):
    text = "N" * 3000 + lambda_text[:600] + "N" * 3000
    path = tmp_path / "gappy.fa"
    path.write_text(">g\n" + "\n".join(text[i : i + 60] for i in range(0, len(text), 60)) + "\n")
    task = get_task("dna")
    s = settings_for(path, window_length=500, max_n_fraction=0.1, val_fraction=0.0)
    data = task.data(s)
    for i in range(30):
        w, tokens, _ = data.training.sample(0, 0, i)
        assert (tokens == 4).mean() <= 0.1 and 2550 <= w.start <= 3150


@pytest.mark.parametrize("bad", [dict(rank=2, world_size=2), dict(rank=0, world_size=1, seed=-1)])
def test_bad_worker_arguments(lambda_fasta, bad):
    args = dict(seed=0, rank=0, world_size=1, batch_size=2) | bad
    with pytest.raises(ValueError):
        next(get_task("dna").train_batches(settings_for(lambda_fasta), **args))
