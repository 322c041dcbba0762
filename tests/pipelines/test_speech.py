"""Speech through ``gfssm transcribe`` and ``gfssm eval asr`` on a Ray Data actor pool,
from the user's folder with relative paths, equal to the task's single-process path; and
training through ``gfssm train asr`` with its MLflow model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from gfssm.pipelines.cli import main
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


def _manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A manifest with audio paths relative to its own folder, as users write them."""
    path.write_text(
        "".join(
            json.dumps({"audio_filepath": f"audio/{name}", "duration": 1.0, "text": text}) + "\n"
            for name, text in rows
        )
    )
    return path


@pytest.mark.slow
def test_transcription_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, monkeypatch, capsys
):
    torch.set_num_threads(1)  # the actors' thread count: same arithmetic, same argmax
    shutil.copytree(audio_dir, tmp_path / "audio")
    monkeypatch.chdir(tmp_path)
    args = ["transcribe", "--model", str(asr_model_dir), "audio", "--out", "ray/out.jsonl"]
    args += ["--batch-files", "2", "--actors", "2", "--cpus-per-actor", "0.5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "6 files" in printed or "3 work items (0 already done)" in printed
    assert "5 transcripts" in printed and "evil.wav" in printed  # the failure is named
    single = tmp_path / "single" / "out.jsonl"
    model = load_model(asr_model_dir).model
    transcribe_single(model, audio_dir, single, batch_files=2, progress=False)
    out = tmp_path / "ray" / "out.jsonl"
    names = [Path(r["audio_filepath"]).name for r in _lines(out)]
    assert names == [Path(r["audio_filepath"]).name for r in _lines(single)]
    assert [r["text"] for r in _lines(out)] == [r["text"] for r in _lines(single)]
    failed = _lines(out.with_name("out.failed.jsonl"))
    assert [Path(f["audio_filepath"]).name for f in failed] == ["evil.wav"]

    assert main(args) == 0  # a rerun finds every group done
    assert "all 3 work items already done" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluation_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, monkeypatch, capsys
):
    torch.set_num_threads(1)
    shutil.copytree(audio_dir, tmp_path / "audio")
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
    manifest = _manifest(tmp_path / "set.jsonl", rows)
    monkeypatch.chdir(tmp_path)
    args = ["eval", "asr", "--model", str(asr_model_dir), "--manifest", "set.jsonl"]
    args += [
        "--out",
        "rows.jsonl",
        "--batch-files",
        "2",
        "--actors",
        "2",
        "--cpus-per-actor",
        "0.5",
    ]
    assert main(args) == 0
    printed, errors = capsys.readouterr()
    got = json.loads(printed.strip().splitlines()[-1])
    assert "MLflow" not in errors  # a model folder: no run to record the numbers under
    expected = evaluate_manifest(
        load_model(asr_model_dir).model,
        manifest,
        out_jsonl=tmp_path / "single.jsonl",
        batch_files=2,
    )
    for key in ("wer", "cer", "utterances", "reference_words", "reference_chars", "failed"):
        assert got[key] == pytest.approx(expected[key]), key
    assert got["failed"] == 1 and got["utterances"] == 4
    assert f"WER {expected['wer']:.2%}" in printed
    assert [r.get("hypothesis") for r in _lines(tmp_path / "rows.jsonl")] == [
        r.get("hypothesis") for r in _lines(tmp_path / "single.jsonl")
    ]


@pytest.mark.slow
def test_asr_trains_through_the_cli_and_its_mlflow_model_transcribes(
    local_ray, tracking_uri, audio_dir, tmp_path, monkeypatch, capsys
):
    import mlflow
    import pandas as pd
    import yaml
    from mlflow.tracking import MlflowClient

    from gfssm.pipelines.tracking import metric_history
    from gfssm.tasks.asr.transcribe import transcribe_file

    shutil.copytree(audio_dir, tmp_path / "audio")
    rows = [("cards-001.wav", "ten of clubs"), ("auth-thankyou.wav", "thank you")]
    _manifest(tmp_path / "real.jsonl", [*rows, ("digits-5.wav", "five")])
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
        "task": {"train_data": ["real.jsonl"], "valid_data": ["real.jsonl"], "n_filters": 16},
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
        },
        "tracking": {"experiment": "asr-pipeline-test"},
    }
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", "asr", "--config", "tiny.yaml", "--tracking-uri", tracking_uri]) == 0
    run_id = re.search(r"^run ([0-9a-f]{32}) ", capsys.readouterr().out, re.M).group(1)
    client = MlflowClient(tracking_uri)
    assert [s for s, _ in metric_history(client, run_id, "eval_cer")] == [2]
    assert client.get_run(run_id).info.status == "FINISHED"

    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    cards = str(tmp_path / "audio" / "cards-001.wav")
    got = pyfunc.predict(pd.DataFrame({"path": [cards]}))
    assert list(got.columns) == ["text"]
    best = load_model(client.download_artifacts(run_id, "best_checkpoint")).model
    assert got["text"][0] == transcribe_file(best, cards).text

    # evaluating the run's model records the numbers as a child of the training run
    args = ["eval", "asr", "--model", run_id, "--manifest", "real.jsonl", "--out", "rows.jsonl"]
    args += ["--tracking-uri", tracking_uri, "--cpus-per-actor", "0.5"]
    assert main(args) == 0
    printed, errors = capsys.readouterr()
    summary = json.loads(printed.strip().splitlines()[-1])
    child = re.search(r"recorded in MLflow: run ([0-9a-f]{32}) \(eval asr, ", errors).group(1)
    evaluation = client.get_run(child)
    assert evaluation.info.status == "FINISHED" and evaluation.info.run_name == "eval asr"
    assert evaluation.info.experiment_id == client.get_run(run_id).info.experiment_id
    tags = evaluation.data.tags
    assert tags["mlflow.parentRunId"] == run_id == tags["gfssm.evaluates"]
    assert tags["gfssm.kind"] == "eval" and tags["gfssm.task"] == "asr"
    for key in ("wer", "cer", "utterances", "real_time_factor"):
        assert evaluation.data.metrics[key] == pytest.approx(summary[key]), key
    assert evaluation.data.params["manifest"] == "real.jsonl"
    assert main(["runs", "list", "--tracking-uri", tracking_uri]) == 0
    assert "└ eval asr" in capsys.readouterr().out


@pytest.mark.slow
def test_beam_search_with_a_character_lm_on_ray_equals_the_single_process_path(
    local_ray, asr_model_dir, audio_dir, tmp_path, monkeypatch, capsys
):
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
    monkeypatch.chdir(tmp_path)
    base = ["transcribe", "--model", str(asr_model_dir), str(audio_dir), "--out", "beam.jsonl"]
    base += ["--batch-files", "2", "--cpus-per-actor", "1"]
    assert main([*base, "--beam", "8", "--kenlm", "chars.arpa", "--lm-weight", "2.0"]) == 0
    assert "beam search (beam 8, LM chars.arpa, weight 2.0)" in capsys.readouterr().out
    model = load_model(asr_model_dir).model
    decoder = BeamSearchDecoder(
        CharVocabulary(),
        BeamSearchConfig(beam_size=8, kenlm=str(lm), lm_weight=2.0),
        model.frame_seconds,
    )
    single = tmp_path / "single.jsonl"
    transcribe_single(model, audio_dir, single, batch_files=2, decoder=decoder, progress=False)
    out = tmp_path / "beam.jsonl"
    assert [r["text"] for r in _lines(out)] == [r["text"] for r in _lines(single)]
    greedy = tmp_path / "greedy.jsonl"
    transcribe_single(model, audio_dir, greedy, batch_files=2, progress=False)
    assert [r["text"] for r in _lines(out)] != [r["text"] for r in _lines(greedy)]

    # Shards written under one decoding are never reused under another.
    assert main(base) == 2
    assert "holds results of another run" in capsys.readouterr().err

    assert main([*base[:-4], "--beam", "4", "--kenlm", "none.arpa"]) == 2
    assert "--kenlm" in capsys.readouterr().err
    assert main([*base[:-4], "--kenlm", "chars.arpa"]) == 2
    assert "need beam search" in capsys.readouterr().err
