"""The plan of a synthetic speech corpus: which sentence each utterance reads, with which
engine, voice, speed, pitch and acoustics, and which voices are held out for validation; all
drawn from the seed, so a plan (and hence a corpus) is reproducible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gfssm.tasks.asr.acoustics import Acoustics, AcousticsConfig, draw_acoustics
from gfssm.tasks.asr.sentences import Sentence
from gfssm.tasks.asr.voices import speaker_of

ENGLISH_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
)


@dataclass(frozen=True)
class SynthConfig:
    """How utterances vary; ranges are inclusive (speed in words per minute, pitch 0-99,
    word gap in units of 10 ms at normal speed). ``engines`` weights the synthesisers;
    ``valid_variants`` espeak variants and ``valid_speakers`` speakers of the other engines
    are held out for validation; ``acoustics`` degrades training audio (and validation audio
    too with ``acoustics_on_valid``)."""

    seed: int = 0
    train_utterances: int = 6000
    valid_utterances: int = 300
    valid_variants: int = 12
    accents: tuple[str, ...] = ENGLISH_ACCENTS
    variants: tuple[str, ...] | None = None  # None: all installed variants
    speed: tuple[int, int] = (130, 210)
    pitch: tuple[int, int] = (25, 75)
    word_gap: tuple[int, int] = (0, 4)
    valid_sentence_fraction: float = 0.1
    engines: tuple[tuple[str, float], ...] = (("espeak", 1.0),)
    valid_speakers: int = 1
    acoustics: AcousticsConfig = field(default_factory=AcousticsConfig)
    acoustics_on_valid: bool = False


@dataclass(frozen=True)
class Job:
    """One utterance to synthesise (``accent`` is espeak's; ``variant`` is the voice)."""

    id: str
    split: str
    spoken: str
    text: str
    accent: str
    variant: str
    speed: int
    pitch: int
    word_gap: int
    engine: str = "espeak"
    acoustics: Acoustics | None = None

    @property
    def voice(self) -> str:
        if self.engine == "espeak":
            return f"{self.accent}+{self.variant}"
        return f"{self.engine}:{self.variant}"


def split_voices(config: SynthConfig, variants: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training espeak variants, held-out validation variants) drawn from the seed."""
    if config.valid_variants >= len(variants):
        raise ValueError(
            f"valid_variants={config.valid_variants} must leave some of the "
            f"{len(variants)} variants for training"
        )
    rng = np.random.default_rng([config.seed, 1])
    held = set(rng.choice(sorted(variants), size=config.valid_variants, replace=False).tolist())
    return sorted(set(variants) - held), sorted(held)


def split_other_voices(
    config: SynthConfig, voices: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Voices of the non-espeak engines split by whole speakers: (train, valid), per engine."""
    speakers = sorted({speaker_of(e, v) for e, names in voices.items() for v in names})
    if not speakers:
        return voices, {}
    if config.valid_speakers >= len(speakers):
        raise ValueError(
            f"valid_speakers={config.valid_speakers} must leave some of the {len(speakers)} "
            f"speakers of {', '.join(sorted(voices))} for training ({', '.join(speakers)})"
        )
    rng = np.random.default_rng([config.seed, 7])
    held = set(rng.choice(speakers, size=config.valid_speakers, replace=False).tolist())
    train = {e: [v for v in names if speaker_of(e, v) not in held] for e, names in voices.items()}
    valid = {e: [v for v in names if speaker_of(e, v) in held] for e, names in voices.items()}
    return train, valid


def plan_jobs(
    config: SynthConfig, sentences: Sequence[Sentence], voices: dict[str, list[str]]
) -> tuple[list[Job], dict]:
    """Every utterance of the corpus, fixed by the seed; plus a description of the split.
    ``voices`` maps each engine of ``config.engines`` to its voices (espeak: variants)."""
    if len(sentences) < 20:
        raise ValueError(f"only {len(sentences)} usable sentences; give more text")
    weights = dict(config.engines)
    train_voices: dict[str, list[str]] = {}
    valid_voices: dict[str, list[str]] = {}
    if "espeak" in weights:
        train_voices["espeak"], valid_voices["espeak"] = split_voices(config, voices["espeak"])
    others = {e: voices[e] for e in weights if e != "espeak"}
    if others:
        train_other, valid_other = split_other_voices(config, others)
        train_voices.update(train_other)
        valid_voices.update(valid_other)
    rng = np.random.default_rng([config.seed, 2])
    order = rng.permutation(len(sentences))
    n_valid_sent = max(1, int(len(sentences) * config.valid_sentence_fraction))
    pools = {"valid": order[:n_valid_sent], "train": order[n_valid_sent:]}
    jobs = []
    for split, count, split_voices_ in (
        ("train", config.train_utterances, train_voices),
        ("valid", config.valid_utterances, valid_voices),
    ):
        usable = [e for e in weights if split_voices_.get(e)]
        if count and not usable:
            raise ValueError(f"no {split} voices: the engines {', '.join(weights)} offer none")
        p = np.array([weights[e] for e in usable]) / sum(weights[e] for e in usable)
        srng = np.random.default_rng([config.seed, 3, int(split == "valid")])
        erng = np.random.default_rng([config.seed, 4, int(split == "valid")])
        degrade = split == "train" or config.acoustics_on_valid
        for i in range(count):
            pool = pools[split]
            sentence = sentences[int(pool[i % len(pool)])]
            # Only a mix draws engines, so an espeak-only corpus is what it always was.
            engine = usable[0] if len(usable) == 1 else str(erng.choice(usable, p=p))
            accent = str(srng.choice(config.accents)) if engine == "espeak" else ""
            arng = np.random.default_rng([config.seed, 5, int(split == "valid"), i])
            jobs.append(
                Job(
                    id=f"{split}-{i:06d}",
                    split=split,
                    spoken=sentence.spoken,
                    text=sentence.text,
                    accent=accent,
                    variant=str(srng.choice(split_voices_[engine])),
                    speed=int(srng.integers(config.speed[0], config.speed[1] + 1)),
                    pitch=int(srng.integers(config.pitch[0], config.pitch[1] + 1)),
                    word_gap=int(srng.integers(config.word_gap[0], config.word_gap[1] + 1)),
                    engine=engine,
                    acoustics=draw_acoustics(config.acoustics, arng) if degrade else None,
                )
            )
    split_info = {
        "train_variants": train_voices.get("espeak", []),
        "valid_variants": valid_voices.get("espeak", []),
        "train_voices": [f"{e}:{v}" for e, names in train_voices.items() for v in names],
        "valid_voices": [f"{e}:{v}" for e, names in valid_voices.items() for v in names],
        "accents": list(config.accents),
        "sentences": {"train": len(pools["train"]), "valid": len(pools["valid"])},
    }
    return jobs, split_info
