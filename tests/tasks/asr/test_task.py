"""The ``asr`` plugin through the Task interface that the pipelines use."""

from __future__ import annotations

import itertools

import pydantic
import pytest
import torch

from gfssm import param_groups
from gfssm.tasks import get_task, load_model, save_model
from gfssm.tasks.asr.task import AsrSettings, AsrTask

SMALL = dict(d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=16)


@pytest.fixture
def settings(espeak_manifest) -> AsrSettings:
    return AsrSettings(
        train_data=[str(espeak_manifest)],
        valid_data=[str(espeak_manifest)],
        n_filters=16,
        speed_factors=(1.0,),
        noise_prob=0.0,
        telephone_prob=0.0,
        time_masks=0.0,
        channel_masks=0,
    )


def test_registered_under_the_entry_point():
    task = get_task("asr")
    assert isinstance(task, AsrTask) and task.name == "asr"


def test_settings_are_frozen_and_strict(settings):
    with pytest.raises(pydantic.ValidationError):
        settings.bidirectional = False
    with pytest.raises(pydantic.ValidationError, match="n_filter"):
        AsrTask().settings({"n_filter": 3})
    with pytest.raises(pydantic.ValidationError, match="speed_factors"):
        AsrSettings(speed_factors=(3.0,))


def test_model_config_carries_the_alphabet(settings):
    task = AsrTask()
    config = task.model_config("gfssm", SMALL, settings)
    assert config.vocab_size == 29 and config.d_model == 32
    with pytest.raises(ValueError, match="vocab_size=50"):
        task.build_model(config.replace(vocab_size=50), settings)


def test_empty_data_lists_are_named():
    task = AsrTask()
    with pytest.raises(ValueError, match="train_data is empty"):
        next(task.train_batches(AsrSettings(), seed=0, rank=0, world_size=1, batch_size=2))


def test_training_steps_lower_the_ctc_loss(settings):
    task = AsrTask()
    torch.manual_seed(0)
    model = task.build_model(task.model_config("gfssm", SMALL, settings), settings)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=3e-3)
    batches = task.train_batches(settings, seed=0, rank=0, world_size=1, batch_size=4)
    batch = next(batches)  # the whole set: fit it
    losses = []
    model.train()
    for _ in range(25):
        out = task.training_step(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert out.count == int(batch["target_lengths"].sum())
    assert out.metrics["audio_seconds"] == pytest.approx(
        float(batch["audio_lengths"].sum()) / 16_000
    )
    assert losses[-1] < 0.7 * losses[0]


def test_evaluate_reports_loss_cer_wer(settings):
    task = AsrTask()
    torch.manual_seed(0)
    model = task.build_model(task.model_config("gfssm", SMALL, settings), settings)
    model.train()
    metrics = task.evaluate(model, settings, batch_size=2)
    assert set(metrics) >= {"loss", "cer", "wer"} and metrics["utterances"] == 4
    assert metrics["loss"] > 0 and metrics["wer"] >= 0.9  # an untrained model knows nothing
    assert model.training  # evaluation leaves the mode as it found it
    assert task.evaluate(model, settings, batch_size=2, max_batches=1)["utterances"] == 2


def test_save_and_load_round_trip(tmp_path, settings):
    task = AsrTask()
    config = task.model_config("gfssm", SMALL, settings)
    model = task.build_model(config, settings).eval()
    save_model(tmp_path / "model", task=task, model=model, config=config, settings=settings)
    loaded = load_model(tmp_path / "model")
    assert loaded.task.name == "asr" and loaded.settings == settings
    batch = next(
        itertools.islice(
            task.train_batches(settings, seed=1, rank=0, world_size=1, batch_size=2), 1
        )
    )
    with torch.no_grad():
        expected, _ = model(batch["audio"], batch["audio_lengths"])
        got, _ = loaded.model(batch["audio"], batch["audio_lengths"])
    assert torch.equal(expected, got)
