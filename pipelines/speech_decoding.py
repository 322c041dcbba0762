"""How Ray actors decode speech: greedy, or beam search with an optional lexicon and KenLM.

The lexicon and language model are read once by the driver and travel with the model
through the object store, so cluster nodes need no copy of them (like the model itself).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gfssm.pipelines.errors import GFSSMUserError


class DecodingError(GFSSMUserError, ValueError):
    pass


@dataclass(frozen=True)
class DecodingOptions:
    """``beam_size`` 0 is greedy CTC decoding. ``lexicon`` restricts output to its words and
    ``kenlm`` is then a word model; without a lexicon, ``kenlm`` is a character model over
    the CTC tokens (``gfssm.tasks.asr.lm.write_arpa(..., units="chars")``)."""

    beam_size: int = 0
    lexicon: str | None = None
    kenlm: str | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0

    def __post_init__(self) -> None:
        if self.beam_size < 0:
            raise DecodingError(f"--beam {self.beam_size}: expected 0 (greedy) or a beam size")
        if not self.beam_size and (self.lexicon or self.kenlm):
            raise DecodingError("--lexicon/--kenlm need beam search: give --beam N (e.g. 32)")
        for flag, path in (("--lexicon", self.lexicon), ("--kenlm", self.kenlm)):
            if path is not None and not Path(path).is_file():
                raise DecodingError(f"{flag} {path}: no such file")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DecodingOptions:
        return cls(args.beam, args.lexicon, args.kenlm, args.lm_weight, args.word_score)

    def describe(self) -> str:
        if not self.beam_size:
            return "greedy decoding"
        parts = [f"beam search (beam {self.beam_size}"]
        if self.lexicon:
            parts.append(f"lexicon {Path(self.lexicon).name}")
        if self.kenlm:
            parts.append(f"LM {Path(self.kenlm).name}, weight {self.lm_weight}")
        return ", ".join(parts) + ")"

    @cached_property
    def _files(self) -> dict[str, tuple[str, bytes]]:
        """(file name, content) of the lexicon and LM, read once: both can be large."""
        return {
            name: (Path(path).name, Path(path).read_bytes())
            for name, path in (("lexicon", self.lexicon), ("kenlm", self.kenlm))
            if path is not None
        }

    def fingerprint(self) -> dict[str, Any]:
        """What decides the output: settings plus the content of the files (not their paths),
        so resumed shards are only reused under the same decoding."""
        out: dict[str, Any] = asdict(self)
        for name, (_, data) in self._files.items():
            out[name] = hashlib.sha1(data).hexdigest()
        return out

    def pack(self) -> dict[str, Any]:
        """Settings and file contents, to ship to actors."""
        return {**asdict(self), **self._files}


def build_decoder(packed: dict[str, Any] | None, frame_seconds: float):
    """In an actor: the task's beam-search decoder from :meth:`DecodingOptions.pack`, or
    ``None`` for greedy decoding."""
    if not packed or not packed["beam_size"]:
        return None
    from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
    from gfssm.tasks.asr.text import CharVocabulary

    # flashlight reads the lexicon and the LM while the decoder is built; the files can go.
    with tempfile.TemporaryDirectory(prefix="gfssm-lm-") as tmp:
        paths: dict[str, str | None] = {}
        for name in ("lexicon", "kenlm"):
            paths[name] = None
            if packed[name] is not None:
                file_name, data = packed[name]
                path = Path(tmp) / f"{name}-{file_name}"
                path.write_bytes(data)
                paths[name] = str(path)
        config = BeamSearchConfig(
            beam_size=packed["beam_size"],
            lexicon=paths["lexicon"],
            kenlm=paths["kenlm"],
            lm_weight=packed["lm_weight"],
            word_score=packed["word_score"],
        )
        return BeamSearchDecoder(CharVocabulary(), config, frame_seconds)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--beam", type=int, default=0, help="beam size (default 0: greedy)")
    group.add_argument("--lexicon", help="lexicon file (word w o r d |): only its words")
    group.add_argument(
        "--kenlm", help="KenLM model (ARPA or binary): word LM with --lexicon, else a character LM"
    )
    group.add_argument("--lm-weight", type=float, default=1.0)
    group.add_argument("--word-score", type=float, default=0.0)
