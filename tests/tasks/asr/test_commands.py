"""The speech task's ``gfssm`` commands as pipelines build them from ``commands()``: run
from the user's folder with relative paths; bad input ends in one TaskInputError."""

from __future__ import annotations

import argparse
import json
import os
import stat
import textwrap

import pytest

from gfssm.tasks import TaskInputError
from gfssm.tasks.asr.realdata import FetchError
from gfssm.tasks.asr.task import AsrSettings, AsrTask

from .test_synth import FORTUNES


def command(command: str, name: str | None):
    found = [c for c in AsrTask().commands() if (c.command, c.name) == (command, name)]
    assert len(found) == 1
    return found[0]


def parse(cmd, argv):
    parser = argparse.ArgumentParser(prog=f"gfssm {cmd.command}")
    cmd.add_arguments(parser)
    return parser.parse_args(argv)


def test_the_commands_the_task_offers():
    kinds = {(c.command, c.name): c.make_job is not None for c in AsrTask().commands()}
    assert kinds == {
        ("transcribe", None): True,
        ("eval", "asr"): True,
        ("data", "synth"): False,
        ("data", "manifest"): False,
        ("data", "fetch-speech"): False,
    }


def test_synth_from_the_users_folder(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    (user / "fortunes").write_text(FORTUNES)
    monkeypatch.chdir(tmp_path)
    synth = command("data", "synth")
    argv = ["--text", "fortunes", "--out", "corpus", "--train-utterances", "3"]
    argv += ["--valid-utterances", "2", "--valid-variants", "1", "--variants", "m1", "f2"]
    args = parse(synth, [*argv, "--accents", "en-us", "--jobs", "2", "--seed", "1"])
    logged: list[str] = []
    assert synth.run(args, user, logged.append) == 0
    assert len((user / "corpus" / "train.jsonl").read_text().splitlines()) == 3
    assert logged[0].startswith(f"{user / 'corpus'}: train.jsonl (")
    # The corpus trains as the quickstart names it: corpus/*.jsonl from the user's folder.
    settings = AsrSettings(train_data=["corpus/train.jsonl"], valid_data=["corpus/valid.jsonl"])
    assert AsrTask().prepare(settings, user).train_data == [str(user / "corpus" / "train.jsonl")]

    with pytest.raises(TaskInputError, match=r"--text nothere: no such file or folder"):
        synth.run(parse(synth, ["--text", "nothere", "--out", "c"]), user, logged.append)
    with pytest.raises(TaskInputError, match="valid_variants=12 must leave some of the 2 variants"):
        synth.run(
            parse(synth, ["--text", "fortunes", "--out", "c2", "--variants", "m1", "f2"]),
            user,
            logged.append,
        )


def test_synth_engine_mistakes_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "fortunes").write_text(FORTUNES)
    synth = command("data", "synth")
    base = ["--text", "fortunes", "--out", "c", "--valid-utterances", "1"]
    for engines, message in (
        (["mbrola"], r"--engines mbrola: unknown engine; expected espeak, flite, festival"),
        (["flite=two"], r"--engines flite=two: expected ENGINE=WEIGHT, e.g. flite=2"),
        (["flite=0"], r"--engines flite=0: the weight must be positive"),
    ):
        with pytest.raises(TaskInputError, match=message):
            synth.run(parse(synth, [*base, "--engines", *engines]), tmp_path, print)
    # Acoustics mistakes are reported by the flag, with the values as typed.
    for flags, message in (
        (["--noise-prob", "2"], r"^--noise-prob 2: expected a probability in \[0, 1\]$"),
        (["--gain-db", "6", "-6"], r"^--gain-db 6 -6: expected MIN <= MAX$"),
        (["--speed-factor", "0", "1.1"], r"^--speed-factor 0 1.1: expected positive values$"),
    ):
        with pytest.raises(TaskInputError, match=message):
            synth.run(parse(synth, [*base, *flags]), tmp_path, print)
    # A synthesiser that is not installed: its package is named, nothing is written.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(TaskInputError, match=r"flite is not installed; install it .*apt-get"):
        synth.run(parse(synth, [*base, "--engines", "flite"]), tmp_path, print)
    assert not (tmp_path / "c").exists()


def test_manifest_from_the_users_folder(tmp_path, real_speech):
    manifest = command("data", "manifest")
    (tmp_path / "lib" / "1" / "2").mkdir(parents=True)
    path, text = real_speech[0]
    (tmp_path / "lib" / "1" / "2" / "1-2-0001.wav").write_bytes(path.read_bytes())
    (tmp_path / "lib" / "1" / "2" / "1-2.trans.txt").write_text(f"1-2-0001 {text.upper()}\n")
    logged: list[str] = []
    assert manifest.run(parse(manifest, ["lib", "--out", "m.jsonl"]), tmp_path, logged.append) == 0
    row = json.loads((tmp_path / "m.jsonl").read_text())
    assert row["audio_filepath"] == str(tmp_path / "lib" / "1" / "2" / "1-2-0001.wav")
    with pytest.raises(TaskInputError, match="nothere: no such file or folder"):
        manifest.run(parse(manifest, ["nothere", "--out", "m.jsonl"]), tmp_path, logged.append)


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """``apt-get download NAME`` builds a real .deb holding one fortune file (so that the
    real ``dpkg -x`` unpacks it); unknown names fail as apt-get does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            set -e
            case "$2" in fortunes|fortunes-min) ;; *)
              echo "E: Unable to locate package $2" >&2; exit 100;;
            esac
            root=$(mktemp -d)
            mkdir -p "$root/DEBIAN" "$root/usr/share/games/fortunes"
            printf 'Package: %s\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@t>\\n'\\
            'Description: test\\n' "$2" > "$root/DEBIAN/control"
            printf 'A fortune of %s.\\n%%\\n' "$2" > "$root/usr/share/games/fortunes/$2"
            dpkg-deb --build "$root" "$2_1.0_all.deb" > /dev/null
            rm -rf "$root"
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_fetch_speech_into_a_relative_folder(tmp_path, monkeypatch, fake_apt):
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.chdir(user)  # as `gfssm data fetch-speech --out speech-data` runs
    fetch = command("data", "fetch-speech")
    logged: list[str] = []
    args = parse(fetch, ["--out", "speech-data", "--sets", "fortunes"])
    assert fetch.run(args, user, logged.append) == 0
    fortunes = user / "speech-data" / "debian" / "usr" / "share" / "games" / "fortunes"
    assert sorted(p.name for p in fortunes.iterdir()) == ["fortunes", "fortunes-min"]
    assert logged == [f"fortunes: 2 sentence files in {fortunes}"]


def test_fetch_failure_is_one_line(tmp_path, monkeypatch, fake_apt):
    from gfssm.tasks.asr.realdata import fetch_debian_packages

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FetchError) as caught:
        fetch_debian_packages(["no-such-package"], "out")
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, TaskInputError)
    assert "no-such-package failed (apt-get: E: Unable to locate package no-such-package)" in (
        message
    )
    assert "apt-get update" in message
