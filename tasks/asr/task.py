"""The ``asr`` task plugin: raw-waveform CTC speech recognition with a GFSSM encoder.

Pipelines drive training through this interface only; transcription and evaluation of
whole files live in :mod:`gfssm.tasks.asr.transcribe`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from gfssm.config import GFSSMConfig
from gfssm.tasks.asr.augment import AugmentConfig
from gfssm.tasks.asr.batching import SpeechDataset, collate, training_batches
from gfssm.tasks.asr.decoding import greedy_decode_batch
from gfssm.tasks.asr.metrics import ErrorRates
from gfssm.tasks.asr.model import CtcSpeechModel
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.base import Batch, StepOutput, Task, TaskSettings, move_batch
from gfssm.tasks.jobs import PredictorSpec, TaskCommand, TaskInputError, resolve_path
from gfssm.tasks.pretrained import unwrap

if TYPE_CHECKING:
    import pandas as pd

    from gfssm.tasks.pretrained import LoadedModel


class AsrSettings(TaskSettings):
    """The ``task:`` section of a speech experiment.

    ``train_data`` / ``valid_data``: JSONL manifests, LibriSpeech-style folders or Common
    Voice TSVs. The rest shapes the model's front end and the training augmentation.
    """

    train_data: list[str] = Field(default_factory=list)
    valid_data: list[str] = Field(default_factory=list)
    bidirectional: bool = True
    n_filters: int = Field(64, ge=8, le=512)
    frontend_init: Literal["gabor", "random"] = "gabor"
    max_duration: float = Field(20.0, gt=0)
    shortest_first_epochs: int = Field(0, ge=0)
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    telephone_prob: float = Field(0.1, ge=0, le=1)
    noise_prob: float = Field(0.3, ge=0, le=1)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    time_masks: float = Field(1.0, ge=0)
    time_mask_frames: int = Field(5, ge=0)
    channel_masks: int = Field(1, ge=0)
    channel_mask_width: int = Field(8, ge=1)

    @field_validator("speed_factors")
    @classmethod
    def _positive_speeds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or min(value) <= 0.5 or max(value) >= 2.0:
            raise ValueError("speed_factors must be non-empty, each between 0.5 and 2.0")
        return value

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            speed_factors=self.speed_factors,
            telephone_prob=self.telephone_prob,
            noise_prob=self.noise_prob,
            noise_snr_db=self.noise_snr_db,
            time_masks=self.time_masks,
            time_mask_frames=self.time_mask_frames,
            channel_masks=self.channel_masks,
            channel_mask_width=self.channel_mask_width,
        )


def ctc_loss_sum(model_out: tuple[torch.Tensor, torch.Tensor], batch: Batch) -> torch.Tensor:
    """Summed CTC loss of a batch (impossible alignments count zero, not inf)."""
    log_probs, frame_lengths = model_out
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        batch["targets"],
        frame_lengths,
        batch["target_lengths"],
        blank=0,
        reduction="sum",
        zero_infinity=True,
    )


def check_data_source(source: str, key: str) -> None:
    """Cheap checks of one ``train_data``/``valid_data`` entry (already absolute), so that
    a wrong path or an empty corpus is reported in the driver in seconds: it exists and is
    readable; a manifest parses and lists at least one utterance whose audio exists; a
    LibriSpeech folder holds transcripts; a Common Voice TSV has a header and rows."""
    from gfssm.tasks.asr.manifests import read_manifest

    if "://" in source:
        return
    path = Path(source)
    where = f"task.{key}: {source}"
    if not path.exists():
        raise TaskInputError(f"{where}: no such file or folder")
    if path.is_dir():
        if next(path.rglob("*.trans.txt"), None) is None:
            raise TaskInputError(
                f"{where}: a folder without *.trans.txt files; expected a LibriSpeech-style "
                f"folder, a JSONL manifest or a Common Voice TSV"
            )
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(1)
    except PermissionError:
        raise TaskInputError(f"{where}: not readable (permission denied)") from None
    if not head:
        raise TaskInputError(f"{where}: empty file (no utterances)")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        utts = read_manifest(path)
        missing = [u for u in utts if not Path(u.audio_filepath).is_file()]
        if missing:
            raise TaskInputError(
                f"{missing[0].source}: audio file {missing[0].audio_filepath} not found"
                + (f" ({len(missing)} of {len(utts)} missing)" if len(missing) > 1 else "")
                + "; relative paths are taken from the manifest's folder"
            )
    elif suffix == ".tsv":
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if len([line for line in lines[1:] if line.strip()]) == 0:
            raise TaskInputError(f"{where}: no rows below the header (no utterances)")
    else:
        raise TaskInputError(
            f"{where}: unknown data description; expected a .jsonl manifest, a Common Voice "
            f".tsv, or a LibriSpeech-style folder"
        )


def predict_transcripts(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The pyfunc: per audio file (``path`` column), the transcript (greedy decoding)."""
    import pandas as pd

    from gfssm.tasks.asr.transcribe import transcribe_file

    if "path" not in frame.columns:
        raise TaskInputError(
            f"the asr pyfunc needs a 'path' column; got columns {list(frame.columns)}"
        )
    texts = [transcribe_file(loaded.model, str(p)).text for p in frame["path"]]
    return pd.DataFrame({"text": texts})


class AsrTask(Task):
    name: ClassVar[str] = "asr"
    settings_type: ClassVar[type[TaskSettings]] = AsrSettings

    def __init__(self) -> None:
        self.vocabulary = CharVocabulary()
        self._datasets: dict[tuple[tuple[str, ...], float], SpeechDataset] = {}

    def prepare(self, settings: AsrSettings, base_dir: Path) -> AsrSettings:
        """``train_data``/``valid_data`` made absolute against ``base_dir`` (``~``
        expanded; audio paths inside a manifest are taken from the manifest's folder) and
        checked: a missing file, an empty corpus or a manifest line naming absent audio
        is a :class:`TaskInputError` here, before any worker starts."""
        update = {}
        for key in ("train_data", "valid_data"):
            sources = getattr(settings, key)
            if not sources:
                raise TaskInputError(
                    f"task.{key} is empty; list manifests, LibriSpeech folders or Common "
                    f"Voice TSVs (e.g. task.{key}=[corpus/{key.split('_')[0]}.jsonl])"
                )
            resolved = [resolve_path(s, Path(base_dir)) or s for s in sources]
            for source in resolved:
                check_data_source(source, key)
            update[key] = resolved
        return settings.model_copy(update=update)

    def commands(self) -> list[TaskCommand]:
        from gfssm.tasks.asr.commands import asr_commands

        return asr_commands()

    def predictor(self) -> PredictorSpec:
        return PredictorSpec(
            inputs=(("path", "string"),),
            outputs=(("text", "string"),),
            predict=predict_transcripts,
        )

    def usage_hint(self, run_id: str) -> str:
        return f"gfssm transcribe --model {run_id} AUDIO.wav ... --out transcripts.jsonl"

    def model_defaults(self, settings) -> dict[str, Any]:
        # Sized to train in minutes on a CPU; chunk 32 keeps the intra-chunk work small.
        return dict(
            d_model=128,
            n_layer=4,
            d_state=32,
            headdim=32,
            expand=2,
            chunk_size=32,
            vocab_size=len(self.vocabulary),
        )

    def build_model(self, config: GFSSMConfig, settings) -> nn.Module:
        if config.vocab_size != len(self.vocabulary):
            raise ValueError(
                f"GFSSMConfig.vocab_size={config.vocab_size}: the asr task's CTC alphabet has "
                f"{len(self.vocabulary)} tokens ({''.join(self.vocabulary.tokens)})"
            )
        return CtcSpeechModel(
            config,
            vocab_size=len(self.vocabulary),
            bidirectional=settings.bidirectional,
            n_filters=settings.n_filters,
            frontend_init=settings.frontend_init,
        )

    def dataset(
        self, sources: list[str], settings: AsrSettings, *, training: bool
    ) -> SpeechDataset:
        """The (cached) dataset of ``sources``; training drops what cannot be aligned even at
        the fastest speed perturbation."""
        if not sources:
            kind = "train_data" if training else "valid_data"
            raise ValueError(f"asr settings: {kind} is empty; list manifests or data folders")
        max_speed = max(settings.speed_factors) if training else 1.0
        key = (tuple(sources), max_speed, settings.max_duration if training else None)
        if key not in self._datasets:
            self._datasets[key] = SpeechDataset(
                sources,
                vocabulary=self.vocabulary,
                max_speed=max_speed,
                max_duration=settings.max_duration if training else None,
            )
        return self._datasets[key]

    def train_batches(
        self,
        settings,
        *,
        seed: int,
        rank: int,
        world_size: int,
        batch_size: int,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        dataset = self.dataset(settings.train_data, settings, training=True)
        return training_batches(
            dataset,
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            start_step=start_step,
            augment=settings.augment(),
            n_filters=settings.n_filters,
            shortest_first_epochs=settings.shortest_first_epochs,
        )

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        out = model(
            batch["audio"],
            batch["audio_lengths"],
            time_mask=batch.get("time_mask"),
            channel_mask=batch.get("channel_mask"),
        )
        chars = int(batch["target_lengths"].sum())
        loss = ctc_loss_sum(out, batch) / max(chars, 1)
        seconds = float(batch["audio_lengths"].sum()) / unwrap(model).sample_rate
        return StepOutput(loss=loss, metrics={"audio_seconds": seconds}, count=chars)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        settings,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """CTC loss per character and greedy-decoding CER/WER on ``valid_data``."""
        dataset = self.dataset(settings.valid_data, settings, training=False)
        inner = unwrap(model)
        was_training = inner.training
        inner.eval()
        order = sorted(range(len(dataset)), key=lambda i: dataset.items[i].utterance.duration)
        rates, loss_sum, chars = ErrorRates(), 0.0, 0
        try:
            for n, start in enumerate(range(0, len(order), batch_size)):
                if max_batches is not None and n >= max_batches:
                    break
                members = order[start : start + batch_size]
                batch = collate(
                    [dataset.load(i) for i in members], [dataset.items[i].targets for i in members]
                )
                batch = move_batch(batch, device)
                out = inner(batch["audio"], batch["audio_lengths"])
                loss_sum += float(ctc_loss_sum(out, batch))
                chars += int(batch["target_lengths"].sum())
                for i, hyp in zip(members, greedy_decode_batch(*out, self.vocabulary)):
                    rates.add(dataset.items[i].text, hyp.text)
        finally:
            inner.train(was_training)
        summary = rates.summary()
        return {
            "loss": loss_sum / max(chars, 1),
            "cer": summary["cer"],
            "wer": summary["wer"],
            "utterances": summary["utterances"],
        }
