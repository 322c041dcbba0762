"""Shared fixtures of the DNA tests: real genomes copied into temporary directories, and a
tiny untrained model as the commands load it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from gfssm import GFSSMConfig, GFSSMForCausalLM
from gfssm.tasks import LoadedModel, get_task
from gfssm.tasks.dna.tokens import VOCAB_SIZE

DATA = Path(__file__).resolve().parents[2] / "data" / "dna"
LAMBDA_NAME = "gi|9626243|ref|NC_001416.1|"


@pytest.fixture
def lambda_name() -> str:
    return LAMBDA_NAME


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def lambda_fasta(tmp_path) -> Path:
    """Phage lambda (48,502 bp, one contig) as a plain FASTA without an index."""
    target = tmp_path / "lambda_virus.fa"
    shutil.copy(DATA / "lambda_virus.fa", target)
    return target


@pytest.fixture
def lambda_text() -> str:
    return "".join(line.strip() for line in (DATA / "lambda_virus.fa").read_text().splitlines()[1:])


@pytest.fixture
def two_contig_fasta(tmp_path, lambda_text) -> Path:
    """Lambda cut into two contigs of 30,000 and 18,502 bp (real sequence)."""
    path = tmp_path / "two.fa"
    with open(path, "w") as out:
        for name, seq in (("left", lambda_text[:30000]), ("right", lambda_text[30000:])):
            out.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                out.write(seq[i : i + 60] + "\n")
    return path


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def tiny_model_overrides() -> dict:
    return dict(d_model=32, n_layer=2, headdim=16, d_state=16, chunk_size=32)


@pytest.fixture
def tiny_config() -> GFSSMConfig:
    return GFSSMConfig.preset("gfssm", vocab_size=VOCAB_SIZE, **tiny_model_overrides())


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return 0


@pytest.fixture
def task():
    return get_task("dna")


@pytest.fixture
def loaded(task, tiny_config, seeded, lambda_fasta) -> LoadedModel:
    """The tiny model (seeded, untrained) as a command loads it; its settings name lambda."""
    settings = task.settings({"fasta": str(lambda_fasta)})
    model = GFSSMForCausalLM(tiny_config).eval()
    return LoadedModel(task=task, model=model, config=tiny_config, settings=settings, meta={})


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine spinning OpenMP
    threads slow them down many times over."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
