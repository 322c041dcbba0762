"""``gfssm embed``: streamed embeddings equal one full forward pass, per base and pooled;
files with their coordinates; bad input in one line; resuming through a real command."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from gfssm import GFSSMConfig, GFSSMEncoder, GFSSMForCausalLM
from gfssm.pipelines.cli import main
from gfssm.tasks import LoadedModel, TaskInputError, save_model
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.embedding import EmbeddingOptions, embed_region, hidden_states
from gfssm.tasks.dna.jobs.embed_job import check_disk_space
from gfssm.tasks.dna.tokens import VOCAB_SIZE
from gfssm.tasks.jobs import run_job_inline

# The streamed pass runs the same float32 math as the full pass, but the chunked scan and
# the FIR sum in another order at piece boundaries: a few hundred float32 ulps of the
# O(1) normed hidden states. 2e-5 absolute (the kernels' float32 tolerance) bounds that and
# is still far below any real difference (a lost cache changes values by ~1e-1).
ATOL = 2e-5
REGION = (1234, 1234 + 5001)  # odd length, > 4 pieces of 1024, not from the contig start


@pytest.fixture
def loaded(loaded):
    """The shared tiny model (conftest), with sinks that matter, so a lost cache would show."""
    with torch.no_grad():
        for layer in loaded.model.backbone.layers:
            layer.mixer.sink_gain.uniform_(0.2, 0.5)
    return loaded


def full_pass(model, genome, contig, start, end, layer=None) -> np.ndarray:
    """(L, D): the whole region in one forward call, no cache."""
    ids = torch.from_numpy(genome.tokens(contig, start, end)[0])[None]
    with torch.inference_mode():
        if layer is None:  # written out, independent of the code under test
            return model.backbone(model.embedding(ids))[0].numpy()
        return hidden_states(model, ids, layer=layer)[0].numpy()


def streamed(model, genome, contig, options):
    rows = list(embed_region(model, lambda a, b: genome.tokens(contig, a, b)[0], *REGION, options))
    return tuple(np.concatenate([r[i] for r in rows]) for i in range(3))


@pytest.mark.parametrize("layer", [None, 1])
def test_streamed_per_base_equals_the_full_pass(loaded, lambda_fasta, lambda_name, layer):
    genome = Genome(lambda_fasta)
    full = full_pass(loaded.model, genome, lambda_name, *REGION, layer=layer)
    starts, ends, values = streamed(
        loaded.model, genome, lambda_name, EmbeddingOptions(layer=layer, piece_length=1024)
    )
    assert values.shape == (5001, 32) and values.dtype == np.float32
    assert np.array_equal(starts, np.arange(*REGION)) and np.array_equal(ends, starts + 1)
    np.testing.assert_allclose(values, full, rtol=0, atol=ATOL)
    # the check can fail: pieces without the cache are not the full pass
    alone = full_pass(loaded.model, genome, lambda_name, REGION[0] + 1024, REGION[1], layer)
    assert np.abs(alone[:100] - full[1024:1124]).max() > 100 * ATOL


@pytest.mark.parametrize("window", [100, 333, 0])
def test_streamed_window_means_equal_the_full_pass(loaded, lambda_fasta, lambda_name, window):
    genome = Genome(lambda_fasta)
    full = full_pass(loaded.model, genome, lambda_name, *REGION).astype(np.float64)
    starts, ends, values = streamed(
        loaded.model, genome, lambda_name, EmbeddingOptions(window=window, piece_length=1024)
    )
    size = window or 5001
    expected_starts = np.arange(REGION[0], REGION[1], size)
    assert np.array_equal(starts, expected_starts)
    assert np.array_equal(ends, np.minimum(expected_starts + size, REGION[1]))
    assert len(values) == EmbeddingOptions(window=window).rows(5001) == -(-5001 // size)
    means = np.stack(
        [full[a - REGION[0] : b - REGION[0]].mean(axis=0) for a, b in zip(starts, ends)]
    )
    np.testing.assert_allclose(values, means, rtol=0, atol=ATOL)


def parse(task, argv):
    (command,) = [c for c in task.commands() if c.command == "embed"]
    assert command.name is None and command.make_job is not None
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command, parser.parse_args(argv)


def make(task, argv: str, base_dir, loaded):
    command, args = parse(task, argv.split())
    return command.make_job(args, base_dir, loaded)


def bed_setup(tmp_path, lambda_fasta, lambda_name, lines):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    shutil.copy(lambda_fasta, work / "lambda.fa")
    (work / "r.bed").write_text("".join(f"{line}\n" for line in lines))
    return work


def test_job_writes_parquet_with_coordinates(task, loaded, tmp_path, lambda_fasta, lambda_name):
    bed = [f"{lambda_name}\t{REGION[0]}\t{REGION[1]}\tgeneA", f"{lambda_name}\t40000\t40007"]
    work = bed_setup(tmp_path, lambda_fasta, lambda_name, bed)
    argv = "--fasta lambda.fa --bed r.bed --out emb --piece 1024 --item-bases 3000"
    job = make(task, argv, work, loaded)
    assert [i.key for i in job.plan()] == ["part-00000", "part-00001"]
    lines: list[str] = []
    assert run_job_inline(job, loaded, lines.append) == 0
    table = pq.read_table(work / "emb" / "lambda.embeddings").to_pandas()
    assert len(table) == 5008 and list(table.columns)[:4] == ["name", "contig", "start", "end"]
    gene = table[table["name"] == "geneA"]
    assert gene["start"].tolist() == list(range(*REGION)) and set(gene["contig"]) == {lambda_name}
    full = full_pass(loaded.model, job.genome, lambda_name, *REGION)
    np.testing.assert_allclose(np.stack(gene["embedding"]), full, rtol=0, atol=ATOL)
    other = table[table["name"] == f"{lambda_name}:40001-40007"]
    assert other["start"].tolist() == list(range(40000, 40007))
    index = (work / "emb" / "lambda.regions.tsv").read_text().splitlines()
    assert index[0] == "index\tname\tcontig\tstart\tend\trows\tfile"
    assert index[2].split("\t")[4:] == ["40007", "7", "lambda.embeddings/part-00001.parquet"]
    assert any("2 parquet file(s), 5,008 rows" in line for line in lines)


def test_job_writes_npy_windows_in_float16(task, loaded, tmp_path, lambda_fasta, lambda_name):
    work = bed_setup(
        tmp_path, lambda_fasta, lambda_name, [f"{lambda_name}\t{REGION[0]}\t{REGION[1]}"]
    )
    argv = "--fasta lambda.fa --bed r.bed --out emb --format npy --dtype float16"
    argv += " --pool mean --window 1000 --region right:1-10 --piece 1024"
    (work / "lambda.fa").write_text((work / "lambda.fa").read_text() + ">right\nACGTACGTAC\n")
    job = make(task, argv, work, loaded)
    assert run_job_inline(job, loaded, lambda _: None) == 0
    rows = [
        line.split("\t") for line in (work / "emb" / "lambda.regions.tsv").read_text().splitlines()
    ]
    assert [r[5] for r in rows[1:]] == ["6", "1"]  # ceil(5001 / 1000) windows; 10 bases < 1000
    first = np.load(work / "emb" / rows[1][6])
    assert first.shape == (6, 32) and first.dtype == np.float16
    full = full_pass(loaded.model, job.genome, lambda_name, *REGION).astype(np.float64)
    np.testing.assert_allclose(first[-1], full[5000:].mean(axis=0), atol=2e-3)  # float16


Case = namedtuple("Case", "bed extra expected")


@pytest.mark.parametrize(
    "case",
    [
        Case(
            ["{c}\t0\t100", "{c}\t48000\t48600"],
            "",
            "--bed r.bed line 2: [48000, 48600) ends past the end of contig '{c}', which has 48,502 bases; expected end <= 48502",
        ),
        Case(["NC_001416\t0\t100"], "", "--bed r.bed line 1: contig 'NC_001416' is not in"),
        Case(["{c}\t10\t10"], "", "--bed r.bed line 1: [10, 10) is empty"),
        Case([], "--region nope:1-10", "--region nope:1-10: contig 'nope' is not in"),
        Case([], "--pool none --window 5", "--window 5: only with --pool mean"),
        Case([], "--layer 3", "--layer 3: the model has blocks 1..2"),
    ],
)
def test_bad_input_is_one_line(task, loaded, tmp_path, lambda_fasta, lambda_name, case):
    work = bed_setup(
        tmp_path, lambda_fasta, lambda_name, [b.format(c=lambda_name) for b in case.bed]
    )
    argv = "--fasta lambda.fa --out emb " + ("--bed r.bed " if case.bed else "") + case.extra
    with pytest.raises(TaskInputError) as err:
        make(task, argv, work, loaded)
    text = str(err.value.args[0]) if isinstance(err.value, KeyError) else str(err.value)
    assert "\n" not in text and text.startswith(case.expected.format(c=lambda_name)), text
    if "NC_001416'" in case.expected:
        assert "--alias" in text  # did-you-mean with the command-line spelling


def test_a_bidirectional_model_is_refused(task, loaded, tmp_path, lambda_fasta, lambda_name):
    work = bed_setup(tmp_path, lambda_fasta, lambda_name, [])
    encoder = GFSSMEncoder(loaded.config)
    other = LoadedModel(task, encoder, loaded.config, loaded.settings, {})
    with pytest.raises(
        TaskInputError, match=r"bidirectional model .* would not equal its full pass"
    ):
        make(task, "--fasta lambda.fa --out emb", work, other)


@pytest.mark.parametrize(
    "command, name, argv",
    [
        ("embed", None, "--fasta lambda.fa --out emb"),
        ("score", "genome", "--fasta lambda.fa --out scores"),
        ("eval", "dna-vep", "--fasta lambda.fa --gff genes.gff3 --out vep"),
    ],
)
def test_an_attention_model_is_refused_by_every_streaming_command(
    command, name, argv, task, loaded, tmp_path, lambda_fasta, lambda_name
):
    """The transformer baseline (trained by ``gfssm study``) has no streaming state: one
    line, before any file is read, not a traceback from a worker."""
    work = bed_setup(tmp_path, lambda_fasta, lambda_name, [])
    config = GFSSMConfig.preset(
        "transformer", vocab_size=VOCAB_SIZE, d_model=32, n_layer=2, headdim=16, d_state=16
    )
    other = LoadedModel(task, GFSSMForCausalLM(config), config, loaded.settings, {})
    (found,) = [c for c in task.commands() if c.command == command and c.name == name]
    parser = argparse.ArgumentParser()
    found.add_arguments(parser)
    pattern = r"^--model: an attention model .* use a gfssm or mamba2 model$"
    with pytest.raises(TaskInputError, match=pattern):
        found.make_job(parser.parse_args(argv.split()), work, other)


def test_output_larger_than_the_free_disk_is_one_line(
    task, loaded, tmp_path, lambda_fasta, lambda_name, monkeypatch
):
    with pytest.raises(TaskInputError) as err:
        check_disk_space(12_300_000_000, 4_100_000_000, "emb/")
    assert str(err.value).startswith(
        "--out emb/: the embeddings need about 12.3 GB but 4.1 GB is free"
    )
    assert "--pool mean" in str(err.value) and "--dtype float16" in str(err.value)
    check_disk_space(100, 100, "emb/")  # fits exactly
    # the whole genome per base: 48,502 rows x 32 floats x 4 bytes + coordinates
    work = bed_setup(tmp_path, lambda_fasta, lambda_name, [])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(0, 0, 6_000_000))
    with pytest.raises(TaskInputError, match=r"need about 7.4 MB but 6.0 MB is free"):
        make(task, "--fasta lambda.fa --out emb", work, loaded)
    make(task, "--fasta lambda.fa --out emb --pool mean --window 100", work, loaded)


@pytest.fixture
def model_dir(task, tmp_path, lambda_fasta, tiny_config, seeded):
    settings = task.settings({"fasta": str(lambda_fasta), "window_length": 128})
    model = GFSSMForCausalLM(tiny_config)
    return save_model(
        tmp_path / "model", task=task, model=model, config=tiny_config, settings=settings
    )


@pytest.mark.slow
def test_gfssm_embed_on_ray_from_a_user_folder_and_rerun(
    tmp_path, model_dir, lambda_fasta, lambda_name, monkeypatch, capsys
):
    """A real ``gfssm embed`` process on a local Ray with relative paths; then, in this
    process (no Ray needed), the rerun finds every item done and rewrites nothing, and a
    region past the end is one line on stderr."""
    user = tmp_path / "me"
    user.mkdir()
    shutil.copy(lambda_fasta, user / "x.fa")
    (user / "r.bed").write_text(f"{lambda_name}\t0\t3001\ta\n{lambda_name}\t20000\t20500\tb\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_TMPDIR=tempfile.mkdtemp(prefix="gfssm-ray-", dir="/tmp"), RAY_AUTH_MODE="disabled"
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    args = ["embed", "--model", str(model_dir), "--fasta", "x.fa", "--bed", "r.bed"]
    args += ["--out", "emb/", "--item-bases", "1000", "--pool", "mean", "--window", "500"]
    args += ["--actors", "1", "--cpus-per-actor", "1"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gfssm.pipelines", *args],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert "2 work items (0 already done)" in done.stdout
    table = pq.read_table(user / "emb" / "x.embeddings").to_pandas()
    assert table["start"].tolist() == [0, 500, 1000, 1500, 2000, 2500, 3000, 20000]
    assert table["end"].tolist()[-2:] == [3001, 20500]
    parts = sorted((user / "emb" / "x.embeddings").glob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]

    monkeypatch.chdir(user)
    capsys.readouterr()
    assert main(args) == 0
    assert "all 2 work items already done" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    (user / "bad.bed").write_text(f"{lambda_name}\t48000\t48600\n")
    assert (
        main(
            [
                "embed",
                "--model",
                str(model_dir),
                "--fasta",
                "x.fa",
                "--bed",
                "bad.bed",
                "--out",
                "e2",
            ]
        )
        == 2
    )
    (line,) = [text for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert line.startswith("gfssm embed: error: --bed bad.bed line 1: [48000, 48600) ends past")
