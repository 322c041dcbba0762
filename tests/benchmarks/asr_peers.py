"""Our recogniser and pocketsphinx on the same real recordings, in one process: CER, WER
and real-time factor side by side, with the project's own normalisation and scoring.

    pip install -e '.[bench]'          # pocketsphinx 5.1.1 (its default en-us model)
    gfssm data fetch-speech --out speech-data --sets pocketsphinx asterisk
    python tests/benchmarks/asr_peers.py --model MODEL_DIR --data speech-data \
        [--kenlm char6.arpa --lm-weight 0.5] [--limit 100]

Sets: LibriVox (5 read utterances) and cards (5) from the pocketsphinx sdist, and the
Asterisk telephony prompts (553, 8 kHz). Both recognisers get the same 16 kHz samples
(:func:`gfssm.tasks.asr.audio.read_audio`, so 8 kHz prompts are upsampled for both); both
hypotheses and the reference pass through
:func:`gfssm.tasks.asr.text.normalise_text` and are scored by
:class:`gfssm.tasks.asr.metrics.ErrorRates` (edits over reference length, whole set). Ours
decodes as `gfssm eval asr` does (:func:`gfssm.tasks.asr.transcribe.evaluate_utterances`:
files batched); pocketsphinx one utterance at a time. RTF = decoding seconds per second of
audio on ``--threads`` (default 1) threads, wall clock and (in brackets) CPU time; ours
includes reading the files, as `gfssm eval asr` does (a small part), pocketsphinx's does
not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gfssm.tasks.asr.audio import read_audio
from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
from gfssm.tasks.asr.manifests import Utterance, read_dataset
from gfssm.tasks.asr.metrics import ErrorRates
from gfssm.tasks.asr.text import CharVocabulary, normalise_text
from gfssm.tasks.asr.transcribe import evaluate_utterances, load_recognizer

SETS = ("librivox", "cards", "asterisk")
INSTALL_HINT = (
    "asr_peers.py: pocketsphinx is not installed; install it with "
    "pip install 'pocketsphinx==5.1.1' (or pip install -e '.[bench]')"
)


def load_sets(data: Path, limit: int | None) -> dict[str, list[Utterance]]:
    """The manifests `gfssm data fetch-speech` wrote into ``data`` (fetched if missing)."""
    if not all((data / f"{name}.jsonl").is_file() for name in SETS):
        from gfssm.tasks.asr.realdata import fetch_evaluation_sets

        fetch_evaluation_sets(data)
    return {name: read_dataset(data / f"{name}.jsonl")[:limit] for name in SETS}


def read_set(utts: list[Utterance]) -> list[torch.Tensor]:
    """Each utterance's 16 kHz samples (n,), read as the evaluation reads them."""
    return [
        read_audio(
            u.audio_filepath,
            offset=u.offset,
            duration=u.duration if u.offset else None,
            raw_sample_rate=u.sample_rate,
        )
        for u in utts
    ]


def score(utts: list[Utterance], hypotheses: list[str]) -> dict[str, float]:
    rates = ErrorRates()
    for utt, hyp in zip(utts, hypotheses):
        rates.add(normalise_text(utt.text), normalise_text(hyp))
    return rates.summary()


def clocks() -> tuple[float, float]:
    """(wall, this process's CPU) seconds: on a shared machine the CPU time is the
    steadier measure, the wall time what a user waits."""
    return time.perf_counter(), time.process_time()


def run_pocketsphinx(decoder, waves: list[torch.Tensor]) -> tuple[list[str], float, float]:
    """pocketsphinx's hypotheses of 16 kHz ``waves``, and the decoding wall and CPU
    seconds."""
    hypotheses, wall, cpu = [], 0.0, 0.0
    for wave in waves:
        pcm = (wave.clamp(-1, 1 - 2**-15) * 32768).round().short().numpy().tobytes()
        start = clocks()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        end = clocks()
        wall, cpu = wall + end[0] - start[0], cpu + end[1] - start[1]
        hypotheses.append(hyp.hypstr if hyp is not None else "")
    return hypotheses, wall, cpu


def run_ours(model, utts: list[Utterance], decoder) -> tuple[list[str], float, float]:
    """Our hypotheses, decoded as `gfssm eval asr` decodes, and the wall and CPU
    seconds."""
    start = clocks()
    rows, _ = evaluate_utterances(model, utts, decoder=decoder)
    end = clocks()
    by_path = {r["audio_filepath"]: r.get("hypothesis", "") for r in rows}
    return [by_path[u.audio_filepath] for u in utts], end[0] - start[0], end[1] - start[1]


def cell(summary: dict[str, float], wall: float, cpu: float, audio: float) -> str:
    rates = f"{summary['cer']:.1%} / {summary['wer']:.1%}"
    return f"{rates} / {wall / audio:.3f} ({cpu / audio:.3f})"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="our model folder")
    p.add_argument("--data", default="speech-data", help="where fetch-speech wrote the sets")
    p.add_argument("--limit", type=int, default=None, help="at most this many per set")
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--kenlm", default=None, help="character LM: adds a beam-search column")
    p.add_argument("--lm-weight", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    try:
        from pocketsphinx import Decoder
    except ImportError:
        print(INSTALL_HINT)
        return 0
    torch.set_num_threads(args.threads)
    model = load_recognizer(args.model).eval()
    ours: dict[str, BeamSearchDecoder | None] = {"ours greedy": None}
    if args.kenlm:
        config = BeamSearchConfig(beam_size=args.beam, kenlm=args.kenlm, lm_weight=args.lm_weight)
        decoder = BeamSearchDecoder(CharVocabulary(), config, model.frame_seconds)
        ours[f"ours beam {args.beam} + LM"] = decoder
    sphinx = Decoder(samprate=16_000, loglevel="FATAL")  # the default en-us model
    heads = ["set", "n", "audio min", *ours, "pocketsphinx 5.1.1"]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for name, utts in load_sets(Path(args.data), args.limit).items():
        waves = read_set(utts)
        audio = sum(w.shape[0] for w in waves) / 16_000
        cells = [name, str(len(utts)), f"{audio / 60:.1f}"]
        for decoder in ours.values():
            hypotheses, wall, cpu = run_ours(model, utts, decoder)
            cells.append(cell(score(utts, hypotheses), wall, cpu, audio))
        hypotheses, wall, cpu = run_pocketsphinx(sphinx, waves)
        cells.append(cell(score(utts, hypotheses), wall, cpu, audio))
        lines.append("| " + " | ".join(cells) + " |")
        print(f"{name}: done", file=sys.stderr)
    print(
        f"CER / WER / RTF wall (RTF CPU) per cell; {args.threads} thread(s); "
        f"model {Path(args.model).name}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
