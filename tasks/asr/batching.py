"""Labelled speech as padded, length-bucketed batches.

A batch is a pure function of (seed, global batch index): every epoch is a fresh
permutation cut into buckets of similar durations; worker ``rank`` of ``world_size`` takes
global batches ``step * world_size + rank``, so a resumed run neither repeats nor skips.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gfssm.tasks.asr.audio import TARGET_RATE, read_audio
from gfssm.tasks.asr.augment import AugmentConfig, augment_waveform, feature_masks
from gfssm.tasks.asr.manifests import Utterance, read_dataset
from gfssm.tasks.asr.text import CharVocabulary, normalise_text

log = logging.getLogger(__name__)
FRAME_SECONDS = 0.02


def ctc_frames_needed(targets: Sequence[int]) -> int:
    """Fewest CTC frames that can emit ``targets``: one per token, plus a blank between
    repeated tokens."""
    return len(targets) + sum(1 for a, b in itertools.pairwise(targets) if a == b)


@dataclass(frozen=True)
class LabelledUtterance:
    utterance: Utterance
    text: str  # normalised
    targets: tuple[int, ...]


class SpeechDataset:
    """Utterances with normalised transcripts and CTC targets, read from one or more data
    descriptions (manifest, LibriSpeech tree, Common Voice TSV)."""

    def __init__(
        self,
        sources: Sequence[str | Path] | str | Path,
        *,
        vocabulary: CharVocabulary | None = None,
        max_speed: float = 1.0,
        max_duration: float | None = None,
    ) -> None:
        self.vocabulary = vocabulary or CharVocabulary()
        if isinstance(sources, (str, Path)):
            sources = [sources]
        self.items: list[LabelledUtterance] = []
        dropped = 0
        for source in sources:
            for utt in read_dataset(source):
                text = normalise_text(utt.text)
                targets = tuple(self.vocabulary.encode(text))
                # Too many characters for the frames (after the fastest speed-up), or none.
                frames = int(utt.duration / max_speed / FRAME_SECONDS)
                too_long = max_duration is not None and utt.duration > max_duration
                if not targets or ctc_frames_needed(targets) > frames or too_long:
                    dropped += 1
                    continue
                self.items.append(LabelledUtterance(utt, text, targets))
        if dropped:
            log.warning("dropped %d utterances (empty text, too fast to align, too long)", dropped)
        if not self.items:
            raise ValueError(f"no usable utterances in {[str(s) for s in sources]}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def durations(self) -> np.ndarray:
        return np.array([item.utterance.duration for item in self.items])

    @property
    def total_hours(self) -> float:
        return float(self.durations.sum()) / 3600.0

    def load(self, index: int) -> torch.Tensor:
        """(n,) float32 audio at 16 kHz of item ``index``."""
        utt = self.items[index].utterance
        return read_audio(
            utt.audio_filepath,
            offset=utt.offset,
            duration=utt.duration if utt.offset else None,
            raw_sample_rate=utt.sample_rate,
        )


def plan_epoch(
    durations: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    bucket_batches: int = 16,
    *,
    shortest_first: bool = False,
) -> list[np.ndarray]:
    """The batches (index arrays) of one epoch: a permutation cut into groups of
    ``bucket_batches`` batches, each group sorted by duration, then all batches shuffled;
    or, with ``shortest_first`` (SortaGrad), ordered by their mean duration."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(durations))
    group = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), group):
        members = order[start : start + group]
        members = members[np.argsort(durations[members], kind="stable")]
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    order = rng.permutation(len(batches))
    if shortest_first:
        means = np.array([durations[b].mean() for b in batches])
        order = np.argsort(means, kind="stable")
    return [batches[i] for i in order]


def collate(
    waves: Sequence[torch.Tensor], targets: Sequence[Sequence[int]]
) -> dict[str, torch.Tensor]:
    """Pad to the longest: audio (b, N), audio_lengths (b,), targets (b, S) (0-padded),
    target_lengths (b,)."""
    b = len(waves)
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
    audio = torch.zeros(b, int(lengths.max()))
    for i, wave in enumerate(waves):
        audio[i, : wave.shape[0]] = wave
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    padded = torch.zeros(b, max(1, int(target_lengths.max())), dtype=torch.long)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return {
        "audio": audio,
        "audio_lengths": lengths,
        "targets": padded,
        "target_lengths": target_lengths,
    }


def training_batches(
    dataset: SpeechDataset,
    *,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    start_step: int,
    augment: AugmentConfig,
    n_filters: int,
    frame_samples: int = 320,
    shortest_first_epochs: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless augmented batches for worker ``rank`` from ``start_step`` on, each with
    ``time_mask`` (b, T) and ``channel_mask`` (b, F) for the front end. The first
    ``shortest_first_epochs`` epochs go from short utterances to long ones (SortaGrad:
    CTC finds its first alignments faster on short utterances)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    durations = dataset.durations
    epoch_plan: tuple[int, list[np.ndarray]] | None = None
    step = start_step
    while True:
        index = step * world_size + rank
        batches_per_epoch = -(-len(dataset) // batch_size)
        epoch, within = divmod(index, batches_per_epoch)
        if epoch_plan is None or epoch_plan[0] != epoch:
            plan = plan_epoch(
                durations, batch_size, seed, epoch, shortest_first=epoch < shortest_first_epochs
            )
            epoch_plan = (epoch, plan)
        members = epoch_plan[1][within]
        rng = np.random.default_rng([seed, index, 7])
        waves = [augment_waveform(dataset.load(i), augment, rng, TARGET_RATE) for i in members]
        batch = collate(waves, [dataset.items[i].targets for i in members])
        frames = [-(-w.shape[0] // frame_samples) for w in waves]
        batch["time_mask"], batch["channel_mask"] = feature_masks(
            frames, n_filters, augment, rng, TARGET_RATE / frame_samples
        )
        yield batch
        step += 1
