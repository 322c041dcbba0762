"""Ray Data transcription and evaluation of real recordings equal the speech task's
single-process path; reruns skip finished groups; unreadable files are reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gfssm.pipelines.batch import PoolSpec
from gfssm.pipelines.cli import main
from gfssm.pipelines.speech import evaluate, transcribe
from gfssm.tasks import get_task, load_model, save_model
from gfssm.tasks.asr.transcribe import evaluate_manifest
from gfssm.tasks.asr.transcribe import transcribe as transcribe_single

ASR_DATA = Path(__file__).resolve().parents[1] / "data" / "asr"
PSX = ASR_DATA / "pocketsphinx"


@pytest.fixture(scope="module")
def asr_model_dir(tmp_path_factory):
    task = get_task("asr")
    settings = task.settings({"n_filters": 16})
    config = task.model_config(
        "gfssm",
        {"d_model": 32, "n_layer": 1, "d_state": 16, "headdim": 16, "chunk_size": 16},
        settings,
    )
    torch.manual_seed(0)
    model = task.build_model(config, settings)
    folder = tmp_path_factory.mktemp("asr-model")
    return save_model(folder, task=task, model=model, config=config, settings=settings)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Real recordings (16 kHz LibriVox and cards, 8 kHz Asterisk) and one broken file."""
    folder = tmp_path_factory.mktemp("audio")
    for source in (
        PSX / "sense_and_sensibility_01_austen_64kb-0880.wav",
        PSX / "sense_and_sensibility_01_austen_64kb-0930.wav",
        PSX / "cards-001.wav",
        ASR_DATA / "asterisk" / "auth-thankyou.wav",
        ASR_DATA / "asterisk" / "digits-5.wav",
        PSX / "evil.wav",
    ):
        shutil.copy(source, folder / source.name)
    return folder


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_transcription_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, capsys
):
    torch.set_num_threads(1)  # the actors' thread count: same arithmetic, same argmax
    out = tmp_path / "ray" / "transcripts.jsonl"
    logged: list[str] = []
    summary = transcribe(
        asr_model_dir,
        [str(audio_dir)],
        out,
        batch_files=2,
        pool=PoolSpec(actors=2, cpus=0.5),
        log=logged.append,
    )
    single = tmp_path / "single" / "transcripts.jsonl"
    transcribe_single(
        load_model(asr_model_dir).model, audio_dir, single, batch_files=2, progress=False
    )
    assert summary["written"] == 5 and summary["failed"] == 1
    assert _lines(out) == _lines(single)
    failed = _lines(out.with_name("transcripts.failed.jsonl"))
    assert [Path(f["audio_filepath"]).name for f in failed] == ["evil.wav"]
    assert failed == _lines(single.with_name("transcripts.failed.jsonl"))
    assert "6 files in 3 groups (0 already done)" in logged[0]

    code = main(
        [
            "transcribe",
            "--model",
            str(asr_model_dir),
            str(audio_dir),
            "--out",
            str(out),
            "--batch-files",
            "2",
            "--cpus-per-actor",
            "0.5",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "(3 already done)" in printed and "5 transcripts" in printed and "evil.wav" not in printed
    )
    assert _lines(out) == _lines(single)


@pytest.mark.slow
def test_evaluation_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, capsys
):
    torch.set_num_threads(1)
    rows = [
        (
            "sense_and_sensibility_01_austen_64kb-0880.wav",
            (PSX / "sense_and_sensibility_01_austen_64kb-0880.txt").read_text().strip(),
        ),
        ("cards-001.wav", "ten of clubs"),
        ("auth-thankyou.wav", "thank you"),
        ("digits-5.wav", "five"),
        ("evil.wav", "nothing"),
    ]
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"audio_filepath": str(audio_dir / name), "duration": 1.0, "text": text})
            + "\n"
            for name, text in rows
        )
    )
    got = evaluate(
        asr_model_dir,
        str(manifest),
        out_jsonl=tmp_path / "rows.jsonl",
        batch_files=2,
        pool=PoolSpec(actors=2, cpus=0.5),
        log=lambda _: None,
    )
    expected = evaluate_manifest(
        load_model(asr_model_dir).model,
        manifest,
        out_jsonl=tmp_path / "single.jsonl",
        batch_files=2,
    )
    for key in ("wer", "cer", "utterances", "reference_words", "reference_chars", "failed"):
        assert got[key] == pytest.approx(expected[key]), key
    assert got["failed"] == 1 and got["utterances"] == 4
    assert _lines(tmp_path / "rows.jsonl") == _lines(tmp_path / "single.jsonl")

    assert (
        main(
            [
                "eval",
                "asr",
                "--model",
                str(asr_model_dir),
                "--manifest",
                str(manifest),
                "--cpus-per-actor",
                "0.5",
            ]
        )
        == 0
    )
    assert f"WER {expected['wer']:.2%}" in capsys.readouterr().out


@pytest.mark.slow
def test_asr_trains_on_ray_and_its_pyfunc_transcribes(local_ray, tracking_uri, audio_dir, tmp_path):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from gfssm.pipelines.config import build_experiment
    from gfssm.pipelines.tracking import metric_history
    from gfssm.pipelines.train import run_training
    from gfssm.tasks.asr.transcribe import transcribe_file

    manifest = tmp_path / "real.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"audio_filepath": str(audio_dir / name), "duration": 1.0, "text": text})
            + "\n"
            for name, text in [
                ("cards-001.wav", "ten of clubs"),
                ("auth-thankyou.wav", "thank you"),
                ("digits-5.wav", "five"),
            ]
        )
    )
    raw = {
        "name": "tiny",
        "task_name": "asr",
        "model": {
            "preset": "gfssm",
            "d_model": 32,
            "n_layer": 1,
            "d_state": 16,
            "headdim": 16,
            "chunk_size": 16,
        },
        "task": {"train_data": [str(manifest)], "valid_data": [str(manifest)], "n_filters": 16},
        "train": {
            "steps": 2,
            "batch_size": 2,
            "eval_every": 2,
            "checkpoint_every": 2,
            "eval_batches": 1,
            "log_every": 1,
            "num_workers": 1,
            "cpus_per_worker": 0.5,
            "use_gpu": False,
            "storage_path": str(tmp_path / "runs"),
        },
        "tracking": {"experiment": "asr-pipeline-test"},
    }
    result = run_training(
        build_experiment(raw, get_task("asr"), {}), tracking_uri=tracking_uri, log=lambda _: None
    )
    client = MlflowClient(tracking_uri)
    assert [s for s, _ in metric_history(client, result.run_id, "eval_cer")] == [2]
    assert client.get_run(result.run_id).info.status == "FINISHED"

    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    cards = str(audio_dir / "cards-001.wav")
    got = pyfunc.predict(pd.DataFrame({"path": [cards]}))
    assert list(got.columns) == ["text"]
    assert got["text"][0] == transcribe_file(load_model(result.best_checkpoint).model, cards).text


@pytest.mark.slow
def test_beam_search_with_a_character_lm_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, capsys
):
    from gfssm.pipelines.speech_decoding import DecodingError, DecodingOptions
    from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
    from gfssm.tasks.asr.lm import write_arpa
    from gfssm.tasks.asr.text import CharVocabulary

    torch.set_num_threads(1)
    lm = write_arpa(
        ["ten of clubs", "thank you", "five", "the house was quiet"],
        tmp_path / "chars.arpa",
        order=3,
        units="chars",
    )
    decoding = DecodingOptions(beam_size=8, kenlm=str(lm), lm_weight=2.0)
    out = tmp_path / "beam.jsonl"
    logged: list[str] = []
    transcribe(
        asr_model_dir,
        [str(audio_dir)],
        out,
        batch_files=2,
        decoding=decoding,
        pool=PoolSpec(actors=1, cpus=1),
        log=logged.append,
    )
    assert "beam search (beam 8, LM chars.arpa, weight 2.0)" in logged[0]
    model = load_model(asr_model_dir).model
    decoder = BeamSearchDecoder(
        CharVocabulary(),
        BeamSearchConfig(beam_size=8, kenlm=str(lm), lm_weight=2.0),
        model.frame_seconds,
    )
    single = tmp_path / "single.jsonl"
    transcribe_single(model, audio_dir, single, batch_files=2, decoder=decoder, progress=False)
    assert _lines(out) == _lines(single)
    greedy = tmp_path / "greedy.jsonl"
    transcribe_single(model, audio_dir, greedy, batch_files=2, progress=False)
    assert [r["text"] for r in _lines(out)] != [r["text"] for r in _lines(greedy)]

    # Shards written under one decoding are never reused under another.
    with pytest.raises(ValueError, match="shards"):
        transcribe(asr_model_dir, [str(audio_dir)], out, batch_files=2, log=lambda _: None)

    with pytest.raises(DecodingError, match="need beam search"):
        DecodingOptions(kenlm=str(lm))
    code = main(
        [
            "transcribe",
            "--model",
            str(asr_model_dir),
            str(audio_dir),
            "--out",
            str(tmp_path / "x.jsonl"),
            "--beam",
            "4",
            "--kenlm",
            str(tmp_path / "none.arpa"),
        ]
    )
    assert code != 0 and "--kenlm" in capsys.readouterr().err
