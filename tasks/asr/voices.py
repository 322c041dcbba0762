"""The speech synthesisers a training corpus can draw on, all from Debian packages:

- ``espeak`` (espeak-ng): formant synthesis, dozens of voice variants and English accents;
- ``flite`` (CMU Flite): diphone and clustergen voices of four real speakers;
- ``festival`` (Festival with festvox voices): diphone voices and an HTS voice.

A voice is ``(engine, name)``. Voices of different engines can share a real speaker (flite's
``slt`` and festival's ``cmu_us_slt_arctic_hts`` were both built from the CMU ARCTIC
recordings of SLT), so held-out validation speakers are chosen by :func:`speaker_of`, never by
voice, and no held-out speaker leaks into training through the other engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

ENGINES = ("espeak", "flite", "festival")
DEBIAN_PACKAGES = {
    "espeak": "espeak-ng",
    "flite": "flite",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
}
BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}
# flite's built-in voices that read any English text at 16 kHz (``awb_time`` only speaks
# clock times; ``kal`` is ``kal16`` at 8 kHz).
FLITE_VOICES = ("awb", "kal16", "rms", "slt")
# The real person behind each non-espeak voice; espeak variants are formant voices with no
# recorded speaker, each its own.
SPEAKERS = {
    "awb": "awb",
    "kal16": "kal",
    "kal_diphone": "kal",
    "ked_diphone": "ked",
    "rms": "rms",
    "slt": "slt",
    "cmu_us_slt_arctic_hts": "slt",
}
NORMAL_WPM = 175  # espeak-ng's default rate; other engines' durations are stretched from it


class EngineMissing(RuntimeError):
    """A requested synthesiser is not installed (the message says which package to install)."""


class SynthesisError(RuntimeError):
    """An installed synthesiser failed on one text."""


def binary(engine: str, program: str | None = None) -> str:
    """The path of ``program`` (default: the engine's own), or :class:`EngineMissing` naming
    the engine's Debian packages."""
    if engine not in BINARIES:
        raise ValueError(f"unknown speech engine {engine!r}; expected one of {', '.join(ENGINES)}")
    program = program or BINARIES[engine]
    found = shutil.which(program)
    if found is None:
        raise EngineMissing(
            f"{program} is not installed; install it "
            f"(Debian/Ubuntu: apt-get install {DEBIAN_PACKAGES[engine]})"
        )
    return found


def espeak_binary() -> str:
    return binary("espeak")


def installed_voices(engine: str) -> list[str]:
    """The voices ``engine`` offers here, sorted (espeak: its voice variants)."""
    program = binary(engine)
    if engine == "espeak":
        listing = subprocess.run(
            [program, "--voices=variant"], capture_output=True, text=True, check=True
        ).stdout
        names = [line.split("!v/")[1].split()[0] for line in listing.splitlines() if "!v/" in line]
        return sorted(set(names))
    if engine == "flite":
        listing = subprocess.run([program, "-lv"], capture_output=True, text=True).stdout
        offered = set(listing.split(":", 1)[-1].split())
        return sorted(v for v in FLITE_VOICES if v in offered)
    listing = subprocess.run(
        [binary(engine, "festival"), "--pipe"],
        input="(print (voice.list))\n",
        capture_output=True,
        text=True,
    ).stdout
    names = listing.strip().strip("()").split()
    return sorted(n for n in names if n in SPEAKERS)  # English voices whose speaker we know


def speaker_of(engine: str, voice: str) -> str:
    """The real speaker a voice was built from (``espeak:VARIANT`` for espeak's own)."""
    if engine == "espeak":
        return f"espeak:{voice}"
    return SPEAKERS.get(voice, f"{engine}:{voice}")


def plain_punctuation(text: str) -> str:
    """Letters, digits, apostrophes and sentence punctuation only: festival's text front end
    crashes on some quote and dash runs (``you." -- alexander``) and on leading dots."""
    kept = "".join(c if c.isalnum() or c in " '.,?!;:" else " " for c in text)
    # Punctuation only right after a word, one mark at a time: festival also crashes on a
    # sentence that starts with "...".
    kept = re.sub(r"([.,?!;:])[.,?!;:]+", r"\1", kept)
    kept = re.sub(r"(^|\s)[.,?!;:]+", r"\1", kept)
    return " ".join(kept.split())


def speak(
    engine: str,
    voice: str,
    text: str,
    wav: Path,
    *,
    speed_wpm: int = NORMAL_WPM,
    pitch: int = 50,
    word_gap: int = 0,
    accent: str = "en-us",
) -> tuple[np.ndarray, int]:
    """Say ``text`` with one voice into ``wav``; its samples (n,) float32 and sample rate.

    ``speed_wpm`` is espeak-ng's rate; flite and festival stretch durations by
    ``NORMAL_WPM / speed_wpm``. ``pitch`` (0-99) and ``word_gap`` (10 ms units) are espeak's
    own; flite moves its mean F0 by up to +-30% with ``pitch``; festival ignores both."""
    program = binary(engine)
    stretch = f"{NORMAL_WPM / speed_wpm:.4f}"
    if engine != "espeak":
        text = plain_punctuation(text)
    if engine == "espeak":
        # -w writes a correct WAV header (--stdout leaves a placeholder length); text on
        # stdin so that no sentence is taken for an option.
        cmd = [program, "-v", f"{accent}+{voice}", "-s", str(speed_wpm), "-p", str(pitch)]
        cmd += ["-g", str(word_gap), "-w", str(wav), "--stdin"]
    elif engine == "flite":
        base_f0 = 160.0 if speaker_of(engine, voice) == "slt" else 105.0
        f0 = base_f0 * (0.7 + 0.6 * pitch / 99.0)
        cmd = [program, "-voice", voice, "--setf", f"duration_stretch={stretch}"]
        cmd += ["--setf", f"int_f0_target_mean={f0:.1f}", "-o", str(wav)]
        # flite reads text from a file argument or -t; a file keeps leading dashes safe.
        text_file = wav.with_suffix(".txt")
        text_file.write_text(text, encoding="utf-8")
        cmd += ["-f", str(text_file)]
    else:
        cmd = [program, "-eval", f"(voice_{voice})"]
        cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {stretch})", "-o", str(wav)]
    result = subprocess.run(cmd, input=text, text=True, capture_output=True)
    if result.returncode != 0 or not wav.is_file():
        raise SynthesisError(
            f"{engine} voice {voice} failed on {text[:60]!r}: "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    wave, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    return wave[:, 0], int(rate)
