"""DNA scoring through ``gfssm score`` on a Ray Data actor pool, from the user's folder
with relative paths, equal to the task's single-process path."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from gfssm.kernels.testing import tolerance
from gfssm.pipelines.cli import main
from gfssm.tasks import get_task, load_model, save_model
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.scoring import ScoringOptions
from gfssm.tasks.dna.scoring import score_genome as score_genome_single
from gfssm.tasks.dna.variants import score_vcf

LAMBDA_NAME = "gi|9626243|ref|NC_001416.1|"
TOL = tolerance(torch.float32)


@pytest.fixture(scope="module")
def dna_model_dir(tmp_path_factory, lambda_fasta):
    """An untrained (seeded) dna model whose sinks matter, saved as a model directory."""
    task = get_task("dna")
    settings = task.settings({"fasta": str(lambda_fasta), "window_length": 128})
    config = task.model_config(
        "gfssm",
        {"d_model": 32, "n_layer": 1, "d_state": 16, "headdim": 16, "chunk_size": 32},
        settings,
    )
    torch.manual_seed(0)
    model = task.build_model(config, settings)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.sink_gain.uniform_(0.2, 0.5)
    folder = tmp_path_factory.mktemp("dna-model")
    return save_model(folder, task=task, model=model, config=config, settings=settings)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, equal_nan=True, rtol=TOL["rtol"], atol=TOL["atol"])


def _gunzip_lines(path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return handle.read().splitlines()


def _bedgraph(path) -> tuple[list[tuple[str, int]], np.ndarray]:
    rows = [line.split("\t") for line in _gunzip_lines(path)]
    return [(r[0], int(r[1])) for r in rows], np.array([float(r[3]) for r in rows])


@pytest.mark.slow
def test_genome_scores_on_ray_equal_the_single_process_path(
    local_ray, dna_model_dir, lambda_fasta, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    shutil.copy(lambda_fasta, tmp_path / "my genome.fa")  # a user's file name, relative
    args = ["score", "genome", "--model", str(dna_model_dir), "--fasta", "my genome.fa"]
    args += ["--out", "scores", "--segment", "12000", "--warmup", "300"]
    args += ["--reverse-complement", "--actors", "2", "--cpus-per-actor", "0.5"]
    assert main(args) == 0
    assert "5 work items (0 already done)" in capsys.readouterr().out
    single = score_genome_single(
        load_model(dna_model_dir).model,
        Genome(lambda_fasta),
        tmp_path / "single" / "lambda_virus",
        options=ScoringOptions(reverse_complement=True),
        progress=False,
        segment_length=12_000,
        warmup=300,
    )
    for track in ("log2_prob", "entropy_bits"):
        where_a, values_a = _bedgraph(tmp_path / "scores" / f"my genome.{track}.bedGraph.gz")
        where_b, values_b = _bedgraph(single.bedgraphs[track])
        assert where_a == where_b and len(where_a) > 48_000
        np.testing.assert_allclose(values_a, values_b, atol=2e-4)  # both rounded to 4 places
    table_a = pq.read_table(tmp_path / "scores" / "my genome.windows.parquet")
    table_b = pq.read_table(single.summary)
    assert table_a.column_names == table_b.column_names and table_a.num_rows == 49
    for name in ("bits_per_base", "mean_entropy_bits", "gc_fraction"):
        _close(table_a[name].to_numpy(), table_b[name].to_numpy())

    # A rerun finds every shard done, rewrites none of them and needs no Ray.
    shards = sorted((tmp_path / "scores" / "my genome.shards").glob("*.bin"))
    stamps = [m.stat().st_mtime_ns for m in shards]
    assert len(shards) == 5
    assert main(args) == 0
    assert "all 5 work items already done" in capsys.readouterr().out
    assert [m.stat().st_mtime_ns for m in shards] == stamps


def _write_vcf(path, genome: Genome) -> None:
    seq = genome.fetch(LAMBDA_NAME, 0, genome.length(LAMBDA_NAME))
    other = {"A": "G", "C": "T", "G": "A", "T": "C"}
    rows = [
        (101, seq[100], other[seq[100]]),  # SNVs
        (5001, seq[5000], other[seq[5000]]),
        (20001, seq[20000], f"{other[seq[20000]]},{other[other[seq[20000]]]}"),  # 2 ALTs
        (30001, seq[30000:30004], seq[30000]),  # deletion of 3 bases
        (40001, seq[40000], seq[40000] + "ACGT"),  # insertion
        (45001, other[seq[45000]], seq[45000]),  # REF does not match the FASTA
    ]
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=NC_001416.1,length=48502>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    lines += [f"NC_001416.1\t{p}\tv{i}\t{r}\t{a}\t.\tPASS\t." for i, (p, r, a) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_variant_scores_on_ray_equal_the_single_process_path(
    local_ray, dna_model_dir, lambda_fasta, tmp_path, monkeypatch
):
    aliases = {"NC_001416.1": LAMBDA_NAME}
    genome = Genome(lambda_fasta, aliases=aliases)
    vcf = tmp_path / "lambda.vcf"
    _write_vcf(vcf, genome)
    with open(vcf, "rb") as plain, gzip.open(tmp_path / "calls.vcf.gz", "wb") as packed:
        packed.write(plain.read())  # plain gzip, as most VCFs are shared
    monkeypatch.chdir(tmp_path)
    args = ["score", "variants", "--model", str(dna_model_dir), "--fasta", str(lambda_fasta)]
    args += ["--vcf", "calls.vcf.gz", "--out", "ray.vcf.gz", "--flank", "200"]
    args += ["--alias", f"NC_001416.1={LAMBDA_NAME}", "--actors", "2", "--cpus-per-actor", "0.5"]
    assert main(args) == 0
    single = score_vcf(
        load_model(dna_model_dir).model, genome, vcf, tmp_path / "single", flank=200, progress=False
    )
    a = pq.read_table(tmp_path / "ray.variants.parquet").to_pandas()
    b = pq.read_table(single.table).to_pandas()
    assert list(a["status"]) == list(b["status"]) and list(a["alt"]) == list(b["alt"])
    assert (a["status"] == "scored").sum() == 6 and (a["status"] != "scored").sum() == 1
    for column in ("llr", "llr_forward", "llr_reverse"):
        _close(a[column].to_numpy(), b[column].to_numpy())
    texts = [_gunzip_lines(p) for p in (tmp_path / "ray.vcf.gz", single.vcf)]
    assert [t.split("\t")[:5] for t in texts[0]] == [t.split("\t")[:5] for t in texts[1]]
    assert sum("GFSSM_LLR=" in line for line in texts[0]) == 5
    assert (tmp_path / "ray.vcf.gz.tbi").is_file()  # bgzipped and indexed


@pytest.mark.slow
def test_pyfunc_and_model_references_score_through_the_cli(
    local_ray, dna_model_dir, lambda_fasta, tracking_uri, tmp_path, capsys
):
    import mlflow
    import pandas as pd

    from gfssm.pipelines.artifacts import log_best_checkpoint, log_pyfunc
    from gfssm.pipelines.model_ref import resolve_model
    from gfssm.pipelines.tracking import create_run, tracking_client
    from gfssm.tasks.dna.variants.effect import sequence_log2_probs

    client = tracking_client(tracking_uri)
    run_id = create_run(client, experiment="pyfunc-test", run_name="lambda", tags={})
    log_best_checkpoint(client, run_id, dna_model_dir)
    registered = log_pyfunc(client, run_id, dna_model_dir, register_as="lambda-tiny")
    assert registered == "models:/lambda-tiny/1"

    # The pyfunc scores sequences exactly like the task's own function.
    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    sequences = ["ACGTTGCAACGGTTAC", "GGGCCCAAATTTNNACGT"]
    got = pyfunc.predict(pd.DataFrame({"sequence": sequences}))
    expected = sequence_log2_probs(load_model(dna_model_dir).model, sequences)
    np.testing.assert_allclose(got["log2_prob"].to_numpy(), expected, rtol=TOL["rtol"])
    assert list(got["length"]) == [16, 18]

    # Every form of --model leads to the same weights.
    weights = (dna_model_dir / "model.pt").read_bytes()
    for ref in (run_id, f"runs:/{run_id}/model", registered, str(dna_model_dir)):
        folder = resolve_model(ref, tracking_uri=tracking_uri, cache=tmp_path / "dl")
        assert (folder / "model.pt").read_bytes() == weights, ref

    bed = tmp_path / "regions.bed"
    bed.write_text(f"{LAMBDA_NAME}\t1000\t3000\n{LAMBDA_NAME}\t9000\t9500\n")
    code = main(
        [
            "score",
            "genome",
            "--model",
            registered,
            "--fasta",
            str(lambda_fasta),
            "--regions",
            str(bed),
            "--out",
            str(tmp_path / "cli"),
            "--tracking-uri",
            tracking_uri,
            "--actors",
            "1",
            "--cpus-per-actor",
            "0.5",
        ]
    )
    assert code == 0
    where, values = _bedgraph(tmp_path / "cli" / "lambda_virus.log2_prob.bedGraph.gz")
    # every base scored: without --warmup a region's first base has no context and gets the
    # uniform prediction (log2 P = -2) rather than being left out
    assert len(where) == 2500 and where[0] == (LAMBDA_NAME, 1000) and values[0] == -2.0
    assert np.all(values < 0)

    assert (
        main(
            [
                "score",
                "genome",
                "--model",
                "models:/lambda-tiny/9",
                "--fasta",
                str(lambda_fasta),
                "--out",
                str(tmp_path / "x"),
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 2
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "not in the registry" in last and last.startswith("gfssm score genome: error: ")
