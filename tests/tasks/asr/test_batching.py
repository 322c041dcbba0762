"""Training batches: deterministic per (seed, rank, world_size, step), bucketed, masked."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from gfssm.tasks.asr.audio import read_audio
from gfssm.tasks.asr.augment import AugmentConfig, change_speed, feature_masks, telephone_band
from gfssm.tasks.asr.batching import (
    SpeechDataset,
    ctc_frames_needed,
    plan_epoch,
    training_batches,
)

AUGMENT = AugmentConfig(
    speed_factors=(0.9, 1.0, 1.1),
    telephone_prob=0.5,
    noise_prob=0.5,
    time_masks=2.0,
    channel_masks=1,
)


def batches(dataset, *, seed=0, rank=0, world_size=1, start_step=0, count=3):
    it = training_batches(
        dataset,
        batch_size=2,
        seed=seed,
        rank=rank,
        world_size=world_size,
        start_step=start_step,
        augment=AUGMENT,
        n_filters=16,
    )
    return list(itertools.islice(it, count))


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def dataset(espeak_manifest):
    return SpeechDataset([espeak_manifest], max_speed=1.1)


def test_dataset_normalises_and_encodes(dataset):
    assert len(dataset) == 4
    item = dataset.items[0]
    assert item.text == "the quick brown fox jumps over the lazy dog"
    assert dataset.vocabulary.decode(item.targets) == item.text


def test_dataset_drops_what_ctc_cannot_align(tmp_path, real_speech):
    path, text = real_speech[2]  # "ten of clubs", 1.1 s: 54 frames of 20 ms
    rows = [
        {"audio_filepath": str(path), "duration": 1.0954, "text": text},
        {"audio_filepath": str(path), "duration": 1.0954, "text": "word " * 12},  # 59 chars
        {"audio_filepath": str(path), "duration": 1.0954, "text": "!!"},  # nothing left
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [i.text for i in SpeechDataset([manifest]).items] == [text]
    # 12 characters need 12 frames; sped up 5x, 1.1 s has only 10.
    with pytest.raises(ValueError, match="no usable utterances"):
        SpeechDataset([manifest], max_speed=5.0)


def test_batches_are_a_function_of_seed_and_step(dataset):
    first = batches(dataset, count=4)
    again = batches(dataset, count=4)
    resumed = batches(dataset, start_step=2, count=2)
    assert all(same(a, b) for a, b in zip(first, again))
    assert same(first[2], resumed[0]) and same(first[3], resumed[1])
    other_seed = batches(dataset, seed=1, count=4)
    assert not all(same(a, b) for a, b in zip(first, other_seed))


def test_ranks_take_disjoint_batches(dataset):
    r0 = batches(dataset, rank=0, world_size=2, count=1)[0]
    r1 = batches(dataset, rank=1, world_size=2, count=1)[0]

    # One epoch of 4 utterances in batches of 2: the two ranks share it out.
    def targets(b):
        return {tuple(t[: int(n)].tolist()) for t, n in zip(b["targets"], b["target_lengths"])}

    assert targets(r0).isdisjoint(targets(r1))
    assert len(targets(r0) | targets(r1)) == 4
    with pytest.raises(ValueError, match="rank=2"):
        batches(dataset, rank=2, world_size=2, count=1)


def test_batch_layout_and_masks_stay_inside_utterances(dataset):
    for batch in batches(dataset, count=4):
        b, n = batch["audio"].shape
        assert batch["audio_lengths"].max() == n
        for i, length in enumerate(batch["audio_lengths"].tolist()):
            assert torch.all(batch["audio"][i, length:] == 0)
            frames = -(-length // 320)
            assert not batch["time_mask"][i, frames:].any()
            t = batch["targets"][i, : batch["target_lengths"][i]]
            assert ctc_frames_needed(t.tolist()) <= frames
        assert batch["channel_mask"].shape == (b, 16)


def test_plan_epoch_buckets_by_duration():
    durations = np.random.default_rng(0).uniform(1, 20, size=400)
    plan = plan_epoch(durations, batch_size=8, seed=3, epoch=0, bucket_batches=50)
    assert sorted(np.concatenate(plan).tolist()) == list(range(400))
    spread = np.mean([np.ptp(durations[b]) for b in plan])
    random_spread = np.mean([np.ptp(durations[i : i + 8]) for i in range(0, 400, 8)])
    assert spread < random_spread / 4
    assert plan_epoch(durations, 8, 3, 1)[0].tolist() != plan[0].tolist()
    ramp = plan_epoch(durations, 8, 3, 0, bucket_batches=50, shortest_first=True)
    means = [durations[b].mean() for b in ramp]
    assert means == sorted(means) and sorted(np.concatenate(ramp).tolist()) == list(range(400))


def test_speed_and_telephone_band(real_speech):
    wave = read_audio(real_speech[0][0])
    assert change_speed(wave, 1.1, 16_000).shape[0] == pytest.approx(wave.shape[0] / 1.1, abs=2)
    assert change_speed(wave, 0.9, 16_000).shape[0] == pytest.approx(wave.shape[0] / 0.9, abs=2)
    narrow = telephone_band(wave, 16_000)
    spectrum = torch.fft.rfft(narrow).abs().square()
    high = spectrum[int(len(spectrum) * 4200 / 8000) :].sum() / spectrum.sum()
    assert narrow.shape == wave.shape and high < 1e-3


def test_feature_masks_respect_lengths():
    rng = np.random.default_rng(0)
    config = AugmentConfig(time_masks=5.0, time_mask_frames=10, channel_masks=2)
    time_mask, channel_mask = feature_masks([250, 40], 32, config, rng, 50.0)
    assert time_mask.shape == (2, 250) and not time_mask[1, 40:].any()
    assert time_mask[0].any() and channel_mask.any(dim=1).all()
