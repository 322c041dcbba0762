"""How ``gfssm transcribe`` and ``gfssm eval asr`` decode: greedy or beam search, with an
optional lexicon and language model whose contents travel inside the job."""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gfssm.tasks.jobs import TaskInputError, existing_file


class DecodingError(TaskInputError):
    pass


@dataclass(frozen=True)
class DecodingOptions:
    """``beam_size`` 0 is greedy CTC decoding. ``lexicon`` restricts output to its words and
    ``kenlm`` is then a word model; without a lexicon, ``kenlm`` is a character model over
    the CTC tokens (``gfssm.tasks.asr.lm.write_arpa(..., units="chars")``).

    ``files`` holds (file name, content) of the lexicon and the LM, read once by
    :meth:`from_args`; the decoder is built from these contents, not from the paths."""

    beam_size: int = 0
    lexicon: str | None = None
    kenlm: str | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0
    beam_tokens: int | None = None
    beam_threshold: float = 25.0
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, base_dir: Path) -> DecodingOptions:
        if args.beam < 0:
            raise DecodingError(f"--beam {args.beam}: expected 0 (greedy) or a beam size")
        if not args.beam and (args.lexicon or args.kenlm):
            raise DecodingError("--lexicon/--kenlm need beam search: give --beam N (e.g. 32)")
        if args.beam_tokens is not None and args.beam_tokens < 1:
            raise DecodingError(f"--beam-tokens {args.beam_tokens}: expected a positive number")
        paths, files = {}, {}
        for name, value in (("lexicon", args.lexicon), ("kenlm", args.kenlm)):
            paths[name] = None
            if value is not None:
                path = existing_file(value, base_dir, f"--{name}")
                paths[name] = str(path)
                files[name] = (path.name, path.read_bytes())
        return cls(
            beam_size=args.beam,
            lexicon=paths["lexicon"],
            kenlm=paths["kenlm"],
            lm_weight=args.lm_weight,
            word_score=args.word_score,
            beam_tokens=args.beam_tokens,
            beam_threshold=args.beam_threshold,
            files=files,
        )

    def describe(self) -> str:
        if not self.beam_size:
            return "greedy decoding"
        parts = [f"beam search (beam {self.beam_size}"]
        if self.beam_tokens:
            parts.append(f"{self.beam_tokens} tokens a frame")
        if self.lexicon:
            parts.append(f"lexicon {Path(self.lexicon).name}")
        if self.kenlm:
            parts.append(f"LM {Path(self.kenlm).name}, weight {self.lm_weight}")
        return ", ".join(parts) + ")"

    def fingerprint(self) -> dict[str, Any]:
        """What decides the output: settings plus the content of the files (not their
        paths), so that stored results are only reused under the same decoding."""
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "files"}
        for name, (_, data) in self.files.items():
            out[name] = hashlib.sha1(data).hexdigest()
        return out

    def build_decoder(self, frame_seconds: float):
        """The beam-search decoder, or None for greedy decoding (in an actor)."""
        if not self.beam_size:
            return None
        from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
        from gfssm.tasks.asr.text import CharVocabulary

        # flashlight reads the lexicon and the LM while the decoder is built; the files go.
        with tempfile.TemporaryDirectory(prefix="gfssm-lm-") as tmp:
            paths: dict[str, str | None] = {"lexicon": None, "kenlm": None}
            for name, (file_name, data) in self.files.items():
                path = Path(tmp) / f"{name}-{file_name}"
                path.write_bytes(data)
                paths[name] = str(path)
            config = BeamSearchConfig(
                beam_size=self.beam_size,
                lexicon=paths["lexicon"],
                kenlm=paths["kenlm"],
                lm_weight=self.lm_weight,
                word_score=self.word_score,
                beam_size_token=self.beam_tokens,
                beam_threshold=self.beam_threshold,
            )
            return BeamSearchDecoder(CharVocabulary(), config, frame_seconds)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--beam", type=int, default=0, help="beam size (default 0: greedy)")
    group.add_argument("--lexicon", help="lexicon file (word w o r d |): only its words")
    group.add_argument(
        "--kenlm", help="KenLM model (ARPA or binary): word LM with --lexicon, else a character LM"
    )
    group.add_argument(
        "--beam-tokens",
        type=int,
        default=None,
        help="tokens tried a frame, most likely first (default: all; 8 is faster, same text "
        "nearly always)",
    )
    group.add_argument(
        "--beam-threshold",
        type=float,
        default=DecodingOptions.beam_threshold,
        help="drop hypotheses this far (log score) below the best",
    )
    group.add_argument("--lm-weight", type=float, default=1.0)
    group.add_argument("--word-score", type=float, default=0.0)
