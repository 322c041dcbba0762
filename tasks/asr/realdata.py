"""Real speech for evaluation, and sentences for the synthetic corpus, fetched from the
package registries (no other download is needed):

- ``pocketsphinx`` 5.1.1 sdist (PyPI, BSD-2-Clause): LibriVox read speech (5 utterances),
  spoken card names (5), and "go forward ten meters" (headerless 16 kHz PCM);
- Debian ``asterisk-core-sounds-en-wav`` + ``asterisk-core-sounds-en`` 1.6.1 (CC-BY-SA-3.0):
  telephony prompts, one speaker, 8 kHz; texts in ``[]``/``()`` (tones, silence) are dropped
  and digits spelled out by the normaliser;
- Debian ``fortunes`` + ``fortunes-min`` (BSD): English sentences for :mod:`.synth`.

    python -m gfssm.tasks.asr.realdata --out data/speech
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gfssm.tasks.asr.audio import AudioError, audio_info
from gfssm.tasks.asr.manifests import Utterance, write_manifest
from gfssm.tasks.jobs import TaskInputError

POCKETSPHINX = ("pocketsphinx", "5.1.1")
ASTERISK_PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
FORTUNE_PACKAGES = ("fortunes", "fortunes-min")
ASTERISK_VOICE = "usr/share/asterisk/sounds/en_US_f_Allison"
ASTERISK_TEXTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
FORTUNE_DIR = "usr/share/games/fortunes"
# The pocketsphinx examples give this transcript for test/data/goforward.raw.
GOFORWARD_TEXT = "go forward ten meters"
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)")
SETS = ("pocketsphinx", "asterisk", "fortunes")


class FetchError(TaskInputError):
    """A download or unpacking step failed; one line saying which, why, and what to do."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _run(cmd: list[str], cwd: Path, what: str, hint: str = "") -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"{what}: {cmd[0]} is not installed{hint}") from None
    except subprocess.CalledProcessError as err:
        reason = _last_line(err.stderr or err.stdout)
        raise FetchError(f"{what} failed ({cmd[0]}: {reason}){hint}") from None


def fetch_debian_packages(names: Sequence[str], dest: str | Path) -> Path:
    """``apt-get download`` each package and unpack it under ``dest`` (no install)."""
    # dpkg and apt-get run in a temporary folder: a relative ``dest`` must not follow them.
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            _run(
                ["apt-get", "download", name],
                Path(tmp),
                f"downloading Debian package {name}",
                "; if the package is unknown, run 'apt-get update' first",
            )
        for deb in sorted(Path(tmp).glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(dest)], Path(tmp), f"unpacking {deb.name}")
    return dest


def fetch_pypi_sdist(name: str, version: str, dest: str | Path) -> Path:
    """Download and unpack the source distribution ``name==version``; its root folder."""
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    root = dest / f"{name}-{version}"
    if root.is_dir():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                name,
                f"{name}=={version}",
                "-d",
                tmp,
            ],
            Path(tmp),
            f"downloading the {name} {version} source distribution from PyPI",
            "; check the network connection or pip's index settings",
        )
        archive = next(Path(tmp).glob(f"{name}-{version}.tar.gz"), None)
        if archive is None:
            raise FetchError(
                f"pip downloaded no {name}-{version}.tar.gz (got {sorted(os.listdir(tmp))})"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return root


def _utterance(path: Path, text: str, *, sample_rate: int | None = None) -> Utterance:
    info = audio_info(path, raw_sample_rate=sample_rate)
    return Utterance(str(path), round(info.duration, 4), text, sample_rate=sample_rate)


def pocketsphinx_sets(sdist_root: str | Path) -> dict[str, list[Utterance]]:
    """The LibriVox, cards and go-forward test recordings of a pocketsphinx source tree."""
    data = Path(sdist_root) / "test" / "data"
    librivox = [
        _utterance(wav, wav.with_suffix(".txt").read_text(encoding="utf-8").strip())
        for wav in sorted((data / "librivox").glob("*.wav"))
    ]
    cards = []
    for line in (data / "cards" / "cards.transcription").read_text().splitlines():
        match = re.match(r"\s*<s>(.*)</s>\s*\((\w+)\)", line)
        if match:
            cards.append(
                _utterance(data / "cards" / f"{match.group(2)}.wav", match.group(1).strip())
            )
    goforward = [_utterance(data / "goforward.raw", GOFORWARD_TEXT, sample_rate=16_000)]
    return {"librivox": librivox, "cards": cards, "goforward": goforward}


def asterisk_prompt_texts(texts_gz: str | Path) -> dict[str, str]:
    """``relpath -> text`` of the prompts that are speech (bracketed parts removed)."""
    out = {}
    with gzip.open(texts_gz, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or ":" not in line:
                continue
            relpath, _, text = line.partition(":")
            spoken = " ".join(_BRACKETED.sub(" ", text).split())
            if spoken and re.search(r"[A-Za-z0-9]", spoken):
                out[relpath.strip()] = spoken
    return out


def asterisk_set(root: str | Path) -> list[Utterance]:
    """Telephony prompts with transcripts, from unpacked asterisk sound packages."""
    root = Path(root)
    out = []
    for relpath, text in sorted(asterisk_prompt_texts(root / ASTERISK_TEXTS).items()):
        wav = root / ASTERISK_VOICE / f"{relpath}.wav"
        if wav.is_file():
            try:
                out.append(_utterance(wav, text))
            except AudioError:
                continue  # a prompt the package ships broken is not a test of the model
    return out


def fetch_evaluation_sets(
    out: str | Path, *, sets: Sequence[str] = ("pocketsphinx", "asterisk")
) -> dict[str, Path]:
    """Fetch the real recordings into ``out`` and write one manifest per set."""
    out = Path(out).expanduser().resolve()
    manifests: dict[str, Path] = {}
    if "pocketsphinx" in sets:
        root = fetch_pypi_sdist(*POCKETSPHINX, out / "sdist")
        for name, utts in pocketsphinx_sets(root).items():
            manifests[name] = write_manifest(utts, out / f"{name}.jsonl")
    if "asterisk" in sets:
        root = fetch_debian_packages(ASTERISK_PACKAGES, out / "debian")
        manifests["asterisk"] = write_manifest(asterisk_set(root), out / "asterisk.jsonl")
    return manifests


def fetch_fortunes(out: str | Path) -> list[Path]:
    """The fortune files (English sentences) of Debian's fortune packages."""
    root = fetch_debian_packages(FORTUNE_PACKAGES, Path(out) / "debian")
    files = sorted(p for p in (root / FORTUNE_DIR).iterdir() if p.is_file() and not p.suffix)
    if not files:
        raise FetchError(f"{root / FORTUNE_DIR}: no fortune files after unpacking")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gfssm.tasks.asr.realdata",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--sets",
        nargs="+",
        default=list(SETS),
        choices=list(SETS),
    )
    args = p.parse_args(argv)
    result: dict[str, object] = {
        name: str(path) for name, path in fetch_evaluation_sets(args.out, sets=args.sets).items()
    }
    if "fortunes" in args.sets:
        result["fortunes"] = [str(f) for f in fetch_fortunes(args.out)]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
