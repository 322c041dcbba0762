"""Shared fixtures of the speech tests: the committed real recordings, a few utterances
spoken by espeak-ng, and tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gfssm import GFSSMConfig
from gfssm.tasks.asr.model import CtcSpeechModel
from gfssm.tasks.asr.synth import Job, synthesise
from gfssm.tasks.asr.text import CharVocabulary

DATA = Path(__file__).resolve().parents[2] / "data" / "asr"
PSX = DATA / "pocketsphinx"
LIBRIVOX_0880 = PSX / "sense_and_sensibility_01_austen_64kb-0880.wav"
LIBRIVOX_0930 = PSX / "sense_and_sensibility_01_austen_64kb-0930.wav"

SPOKEN = [
    ("en-us", "m3", "the quick brown fox jumps over the lazy dog"),
    ("en-gb", "f2", "a visit to a strange place will bring fresh work"),
    ("en-gb-scotland", "klatt", "are you sure the back door is locked"),
    ("en-us", "f4", "avoid reality at all costs"),
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run small tensors: on a shared 2-core machine a second intra-op thread
    mostly waits for the first (and for other processes), so run them with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def asr_data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def real_speech() -> list[tuple[Path, str]]:
    """Committed real recordings (16 kHz wav) with their transcripts."""
    return [
        (LIBRIVOX_0880, LIBRIVOX_0880.with_suffix(".txt").read_text().strip()),
        (LIBRIVOX_0930, LIBRIVOX_0930.with_suffix(".txt").read_text().strip()),
        (PSX / "cards-001.wav", "ten of clubs"),
    ]


@pytest.fixture(scope="session")
def espeak_manifest(tmp_path_factory) -> Path:
    """A JSONL manifest of a few sentences spoken by espeak-ng (16 kHz wav)."""
    root = tmp_path_factory.mktemp("espeak")
    rows = []
    for i, (accent, variant, text) in enumerate(SPOKEN):
        job = Job(f"t{i}", "train", text, text, accent, variant, 170, 50, 1)
        path = root / f"{job.id}.wav"
        duration = synthesise(job, path)
        rows.append({"audio_filepath": path.name, "duration": duration, "text": text})
    manifest = root / "spoken.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def tiny_config(**overrides) -> GFSSMConfig:
    values = dict(d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=16, vocab_size=29)
    values.update(overrides)
    return GFSSMConfig.preset("gfssm", **values)


@pytest.fixture
def tiny_model():
    """A factory of small random speech models (sinks and biases made non-trivial)."""

    def make(*, bidirectional: bool = True, dtype=torch.float32, seed: int = 0, n_filters=16):
        torch.manual_seed(seed)
        model = CtcSpeechModel(
            tiny_config(),
            vocab_size=len(CharVocabulary()),
            bidirectional=bidirectional,
            n_filters=n_filters,
        )
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "sink_v" in name or "sink_gain" in name:
                    param.normal_(0.0, 0.3)
            model.head.bias.normal_(0.0, 1.0)
        return model.to(dtype).eval()

    return make
