"""The dna plugin through the Task interface only, as the pipelines drive it."""

import math
import pickle

import pydantic
import pytest
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks import available_tasks, get_task, load_model, save_model
from gfssm.tasks.dna import DnaSettings, DnaTask
from gfssm.tasks.dna.tokens import VOCAB_SIZE


def test_registered_as_entry_point():
    assert available_tasks()["dna"].value == "gfssm.tasks.dna.task:DnaTask"
    task = get_task("dna")
    assert isinstance(task, DnaTask) and task.settings_type is DnaSettings


def test_settings_are_frozen_and_strict(lambda_fasta):
    task = get_task("dna")
    s = task.settings({"fasta": str(lambda_fasta)})
    assert s.window_length == 1024 and s.eval_length == 1024
    with pytest.raises(pydantic.ValidationError):
        s.window_length = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="window_lenght"):
        task.settings({"window_lenght": 100})
    with pytest.raises(pydantic.ValidationError, match="window_length"):
        task.settings({"window_length": 2_000_000})
    with pytest.raises(pydantic.ValidationError, match="not both"):
        task.settings({"val_contigs": ["a"], "val_bed": "x.bed"})


def test_model_config_has_the_dna_vocabulary(lambda_fasta):
    task = get_task("dna")
    s = task.settings({"fasta": str(lambda_fasta)})
    config = task.model_config("gfssm", {"d_model": 32, "headdim": 16}, s)
    assert config.vocab_size == VOCAB_SIZE and config.d_model == 32
    assert isinstance(task.build_model(config, s), GFSSMForCausalLM)
    with pytest.raises(ValueError, match="vocab_size"):
        task.build_model(config.replace(vocab_size=4), s)


def train(task, settings, model, steps, lr=3e-3):
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = task.train_batches(settings, seed=0, rank=0, world_size=1, batch_size=4)
    for _ in range(steps):
        out = task.training_step(model, next(batches))
        out.loss.backward()
        optim.step()
        optim.zero_grad()
    return out


def test_training_step_and_evaluate_side_by_side(lambda_fasta, tiny_config, seeded, tmp_path):
    task = get_task("dna")
    s = task.settings(
        {"fasta": str(lambda_fasta), "window_length": 192, "val_fraction": 0.1, "markov_order": 3}
    )
    model = task.build_model(tiny_config, s)
    before = task.evaluate(model, s, batch_size=4, max_batches=2)
    out = train(task, s, model, 12, lr=5e-3)
    assert out.count == 4 * 191 and set(out.metrics) == {"bits_per_base", "accuracy"}
    assert math.isclose(out.metrics["bits_per_base"], out.loss.item() / math.log(2), rel_tol=1e-4)
    after = task.evaluate(model, s, batch_size=4, max_batches=2)
    for key in ("loss", "bits_per_base", "accuracy", "markov_bits_per_base", "markov_accuracy"):
        assert key in after and math.isfinite(after[key])
    assert after["bits_per_base"] < before["bits_per_base"]
    assert after["markov_bits_per_base"] == before["markov_bits_per_base"]
    assert 1.9 < after["markov_bits_per_base"] < 2.0 and after["windows"] == 8
    # the task pickles small (for Ray workers) and still works after unpickling
    shipped = pickle.dumps(task)
    assert len(shipped) < 1000
    assert pickle.loads(shipped).evaluate(model, s, batch_size=4, max_batches=2) == after
    # a model directory round-trips through the registry
    save_model(tmp_path / "m", task=task, model=model, config=tiny_config, settings=s)
    loaded = load_model(tmp_path / "m")
    again = loaded.task.evaluate(loaded.model, loaded.settings, batch_size=4, max_batches=2)
    assert again["bits_per_base"] == pytest.approx(after["bits_per_base"], rel=1e-6)


def test_softmask_weight_zero_drops_lowercase_from_the_loss(tmp_path, lambda_text, tiny_config):
    text = lambda_text[:400].lower() + lambda_text[400:800]
    path = tmp_path / "soft.fa"
    path.write_text(">s\n" + text + "\n")
    task = get_task("dna")
    s = task.settings(
        {
            "fasta": str(path),
            "window_length": 800,
            "val_fraction": 0.0,
            "softmask_weight": 0.0,
            "rc_augment": False,
        }
    )
    model = task.build_model(tiny_config, s)
    batch = next(task.train_batches(s, seed=0, rank=0, world_size=1, batch_size=1))
    loss = task.training_step(model, batch).loss
    logits = model(batch["input_ids"])[0, 399:, :4]
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"][0, 399:])
    torch.testing.assert_close(loss, expected)
