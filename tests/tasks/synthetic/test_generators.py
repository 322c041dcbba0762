"""The synthetic problems: reproducible from a seed, answers that a brute-force reader of
the input finds on its own, and evaluation lengths that training never produces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gfssm.tasks import get_task
from gfssm.tasks.synthetic import IGNORE, KINDS, Problem, SyntheticSettings, seeded
from gfssm.tasks.synthetic.generators import DIGITS, FILLER, FIRST_FREE, MARKER, TRIGGER


def solve_mqar(x: list[int], half: int) -> dict[int, int]:
    """Position -> answer, reading the sequence left to right like a person would: remember
    every key -> value pair, then answer each key that comes back."""
    answers, memory = {}, {}
    t = 0
    while t + 1 < len(x) and 0 < x[t] < half and x[t + 1] >= half and x[t] not in memory:
        memory[x[t]] = x[t + 1]
        t += 2
    for position in range(t, len(x)):
        if 0 < x[position] < half:  # a key again (filler is 0, values are >= half)
            answers[position] = memory[x[position]]
    return answers


def solve_induction(x: list[int]) -> dict[int, int]:
    first = x.index(TRIGGER)
    return {len(x) - 1: x[first + 1]}


def solve_selective_copy(x: list[int], k: int) -> dict[int, int]:
    data = [v for v in x[: len(x) - k] if v != FILLER]
    return {len(x) - k + i: v for i, v in enumerate(data)}


def solve_passkey(x: list[int], k: int) -> dict[int, int]:
    start = x.index(TRIGGER) + 1
    key = x[start : start + k]
    query = len(x) - 1 - k
    assert x[query] == MARKER
    return {query + i: v for i, v in enumerate(key)}


def brute_force(problem: Problem, x: list[int]) -> dict[int, int]:
    if problem.kind == "mqar":
        return solve_mqar(x, problem.vocab_size // 2)
    if problem.kind == "induction":
        return solve_induction(x)
    if problem.kind == "selective_copy":
        return solve_selective_copy(x, problem.copy_tokens)
    return solve_passkey(x, problem.passkey_digits)


PROBLEMS = {
    "mqar": Problem("mqar", 256),
    "induction": Problem("induction", 32),
    "selective_copy": Problem("selective_copy", 32, copy_tokens=8),
    "passkey": Problem("passkey", 64, passkey_digits=5),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", [64, 257, 1000])
def test_answers_match_a_brute_force_reader(kind, length):
    problem = PROBLEMS[kind]
    inputs, targets = problem.generate(seeded(7, length), 6, length)
    assert inputs.shape == targets.shape == (6, length)
    assert inputs.min() >= 0 and inputs.max() < problem.vocab_size
    for x, y in zip(inputs.tolist(), targets.tolist()):
        asked = {t: v for t, v in enumerate(y) if v != IGNORE}
        assert asked, "every sequence asks something"
        assert asked == brute_force(problem, x)


def test_mqar_pairs_grow_with_length_and_keys_are_distinct():
    problem = PROBLEMS["mqar"]
    counts = []
    for length in (128, 512):
        inputs, targets = problem.generate(seeded(1), 4, length)
        n = problem.pairs(length)
        keys = inputs[:, 0 : 2 * n : 2]
        assert all(len(set(row)) == n for row in keys.tolist())
        counts.append(int((targets[0] != IGNORE).sum()))
    assert counts == [problem.pairs(128), problem.pairs(512)] and counts[1] == 4 * counts[0]


def test_passkey_digits_never_appear_in_the_filler():
    problem = PROBLEMS["passkey"]
    inputs, _ = problem.generate(seeded(3), 4, 4096)
    digit_tokens = (inputs >= FIRST_FREE) & (inputs < FIRST_FREE + DIGITS)
    assert (digit_tokens.sum(axis=1) == 2 * problem.passkey_digits).all()


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_data_other_seed_other_data(kind):
    problem = PROBLEMS[kind]
    a = problem.generate(seeded(5, 1, 0, 1, 9), 4, 128)
    b = problem.generate(seeded(5, 1, 0, 1, 9), 4, 128)
    c = problem.generate(seeded(5, 1, 0, 1, 10), 4, 128)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_training_batches_resume_exactly_and_use_the_training_length_only():
    task = get_task("synthetic")
    settings = task.settings({"kind": "mqar", "vocab_size": 256, "train_length": 128})
    stream = task.train_batches(settings, seed=3, rank=0, world_size=1, batch_size=4)
    first = [next(stream) for _ in range(5)]
    resumed = task.train_batches(settings, seed=3, rank=0, world_size=1, batch_size=4, start_step=3)
    assert torch.equal(next(resumed)["input_ids"], first[3]["input_ids"])
    other_rank = task.train_batches(settings, seed=3, rank=1, world_size=2, batch_size=4)
    assert not torch.equal(next(other_rank)["input_ids"], first[0]["input_ids"])
    assert {b["input_ids"].shape[1] for b in first} == {128}
    assert settings.lengths_to_eval() == (256, 512)


def test_eval_lengths_must_be_ones_never_trained_on():
    with pytest.raises(ValueError, match="never trained on"):
        SyntheticSettings(kind="induction", train_length=128, eval_lengths=(128, 256))
    with pytest.raises(ValueError, match="needs sequences of"):
        SyntheticSettings(kind="selective_copy", copy_tokens=16, train_length=16)


def test_evaluation_reports_accuracy_per_length_and_is_the_same_for_every_run():
    from gfssm import GFSSMConfig

    task = get_task("synthetic")
    settings = task.settings({"kind": "induction", "train_length": 64, "eval_samples": 6})
    config = GFSSMConfig.preset("gfssm", d_model=32, n_layer=1, headdim=16, d_state=16,
                                vocab_size=32)  # fmt: skip
    torch.manual_seed(0)
    model = task.build_model(config, settings).eval()
    first = task.evaluate(model, settings, batch_size=4)
    again = task.evaluate(model, settings, batch_size=3)  # other batching, same examples
    assert set(first) >= {"accuracy", "loss", "accuracy_L64", "accuracy_L128", "accuracy_L256",
                          "length_gen_accuracy", "sequence_accuracy"}  # fmt: skip
    assert first["accuracy"] == first["accuracy_L64"]
    assert first["length_gen_accuracy"] == pytest.approx(
        (first["accuracy_L128"] + first["accuracy_L256"]) / 2
    )
    for key in first:
        assert first[key] == pytest.approx(again[key], rel=1e-5, abs=1e-6)
