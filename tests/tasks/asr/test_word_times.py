"""Word times against known truth: the known-boundary audio itself, the scoring, and the
times that the transcription path (the one `gfssm transcribe` takes) reports.

A tiny model trained in a test cannot recognise words, so the path is checked with a
real tiny model whose CTC head is fitted (logistic regression on its own encoder
features) to say ``a`` on the frames inside a true word and ``|`` between words: it
then transcribes each word as ``a`` exactly where the speech is, to within a frame, and
every error beyond that comes from the path's time bookkeeping (front-end framing,
overlapping windows, streamed state, greedy and beam word times). What the trained
models reach on real words is measured by ``tests/benchmarks/asr_word_times.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from gfssm.tasks.asr.audio import read_audio
from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder, WordTiming
from gfssm.tasks.asr.longform import ChunkingConfig
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import TranscriptionResult, transcribe_batch
from gfssm.tasks.asr.word_truth import (
    TruthConfig,
    TruthWord,
    build_truth_audio,
    score_word_times,
    speech_span,
)

# Voiced words without stop closures: the fitted head below tells speech from silence frame
# by frame, and the near-silence of a closure ("picture") would split a word in two.
WORDS = ("morning", "river", "lemon", "yellow", "mirror", "woman", "money", "evening")
CONFIG = TruthConfig(seed=3)
SECONDS = 30.0
RATE = 16_000
FRAME_MS = 20.0  # the model's frame stride: the resolution of every word time
# Several windows and chunk boundaries in 30 s, so that an offset lost at a boundary shows.
CHUNKING = ChunkingConfig(chunk_seconds=7.0, context_seconds=1.0)
VOCAB = CharVocabulary()


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory) -> tuple[str, list[TruthWord]]:
    path = tmp_path_factory.mktemp("truth") / "truth.wav"
    return str(path), build_truth_audio(path, SECONDS, CONFIG, WORDS)


def test_speech_span_finds_a_burst():
    wave = torch.zeros(4000)
    wave[1000:1800] = 0.5 * torch.sin(torch.arange(800) * 0.3)
    first, last = speech_span(wave, CONFIG)
    half_window = CONFIG.window_seconds * RATE / 2
    assert abs(first - 1000) <= half_window and abs(last - 1800) <= half_window
    assert speech_span(torch.zeros(100), CONFIG) == (0, 0)


def test_truth_words_are_single_normalised_words(tmp_path):
    with pytest.raises(ValueError, match="not one word"):
        build_truth_audio(tmp_path / "x.wav", 5.0, CONFIG, ["river", "42"])
    with pytest.raises(ValueError, match="no words"):
        build_truth_audio(tmp_path / "x.wav", 5.0, CONFIG, [])


def test_truth_boundaries_are_where_speech_energy_starts_and_ends(truth_file):
    path, truth = truth_file
    audio = read_audio(path)
    assert soundfile.info(path).duration == SECONDS
    assert len(truth) >= 25 and {t.word for t in truth} == set(WORDS)
    edge = int(CONFIG.window_seconds * RATE)  # speech within 5 ms of each boundary
    loud = 10 ** (CONFIG.threshold_dbfs / 20)  # the threshold's RMS as an amplitude
    previous_end = 0
    for word in truth:
        start, end = round(word.start * RATE), round(word.end * RATE)
        assert word.start * RATE == pytest.approx(start) and word.end * RATE == pytest.approx(end)
        # Nothing but digital silence before the word (since the last one)...
        assert torch.count_nonzero(audio[previous_end:start]) == 0
        # ...and speech above the threshold right at both of its boundaries.
        assert audio[start : start + edge].abs().max() >= loud
        assert audio[end - edge : end].abs().max() >= loud
        gap = (start - previous_end) / RATE
        assert previous_end == 0 or gap >= CONFIG.word_gap[0] - 1 / RATE
        previous_end = end
    assert torch.count_nonzero(audio[previous_end:]) == 0


def test_truth_is_reproducible_from_the_seed(truth_file, tmp_path):
    path, truth = truth_file
    assert build_truth_audio(tmp_path / "again.wav", SECONDS, CONFIG, WORDS) == truth
    assert soundfile.read(tmp_path / "again.wav")[0].tolist() == soundfile.read(path)[0].tolist()
    other = build_truth_audio(tmp_path / "other.wav", SECONDS, TruthConfig(seed=4), WORDS)
    assert [t.start for t in other] != [t.start for t in truth]


def test_scoring_recovers_known_errors(truth_file):
    _, truth = truth_file
    window = 10.0
    decoded = []
    for k, t in enumerate(truth):
        late = 0.05 if t.start >= SECONDS - window else 0.0  # only the last window drifts
        word = "zzz" if k == 4 else t.word  # a substitution: not timed
        if k != 2:  # a deletion
            decoded.append(WordTiming(word, t.start + 0.03 + late, t.end - 0.01 + late))
        if k == 6:
            decoded.append(WordTiming("extra", t.end + 0.01, t.end + 0.02))  # an insertion
    report = score_word_times(truth, decoded, SECONDS, window_seconds=window)
    last = [t for k, t in enumerate(truth) if t.start >= SECONDS - window and k not in (2, 4)]
    assert report.timed == len(truth) - 2 and report.decoded_words == len(truth)
    assert report.recall == pytest.approx((len(truth) - 2) / len(truth))
    summary = report.summary()
    assert summary["start_median_ms"] == pytest.approx(30.0)
    assert summary["end_median_ms"] == pytest.approx(10.0)
    assert summary["start_bias_ms"] == pytest.approx(30 + 50 * len(last) / report.timed)
    assert report.first_window_ms == pytest.approx(20.0)  # |+30| and |-10| pooled
    assert report.last_window_ms == pytest.approx(60.0)  # |+80| and |+40| pooled
    assert report.drift_ms == pytest.approx(40.0)
    # With substitutions the misspelt word is timed too; recall still counts exact words.
    loose = score_word_times(truth, decoded, SECONDS, window_seconds=window, substitutions=True)
    assert loose.timed == len(truth) - 1 and loose.exact == report.exact == len(truth) - 2
    assert loose.recall == report.recall


def fit_speech_head(model, audio: torch.Tensor, truth: list[TruthWord]):
    """Fit ``model``'s CTC head to emit ``a`` on frames whose middle lies inside a true
    word and ``|`` elsewhere (logistic regression on the encoder's whole-file features);
    the other tokens are made impossible."""
    with torch.no_grad():
        frames, _ = model.frontend(audio[None])
        features = model.encoder(frames)[0]
    middles = (torch.arange(features.shape[0]) + 0.5) * FRAME_MS / 1000
    inside = torch.zeros(features.shape[0], dtype=torch.bool)
    for t in truth:
        inside |= (middles >= t.start) & (middles < t.end)
    mean, scale = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / scale
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        # Speech frames weigh more: a frame of a word taken for silence splits the word,
        # a silent frame taken for speech only moves a boundary by a frame.
        value = torch.nn.functional.binary_cross_entropy_with_logits(
            x @ weight + bias, inside.float(), pos_weight=torch.tensor(10.0)
        )
        value.backward()
        return value

    optimiser.step(loss)
    a, sep = VOCAB.tokens.index("a"), VOCAB.separator
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-30.0)
        # logit_a - logit_sep = the fitted score, on unnormalised features.
        model.head.weight[a] = weight / scale
        model.head.bias[a] = bias - (weight / scale * mean).sum()
        model.head.bias[sep] = 0.0
    return model


@pytest.mark.parametrize("bidirectional", [True, False], ids=["windows", "streamed"])
def test_decoded_word_times_match_the_truth_to_a_frame(truth_file, tiny_model, bidirectional):
    path, truth = truth_file
    model = fit_speech_head(tiny_model(bidirectional=bidirectional), read_audio(path), truth)
    assert model.frame_seconds * 1000 == FRAME_MS
    spoken = [TruthWord("a", t.start, t.end) for t in truth]  # every word is said as "a"
    beam = BeamSearchDecoder(VOCAB, BeamSearchConfig(beam_size=8), model.frame_seconds)
    for decoder in (None, beam):
        (result,) = transcribe_batch(model, [path], decoder=decoder, chunking=CHUNKING)
        assert isinstance(result, TranscriptionResult)
        report = score_word_times(spoken, result.words, SECONDS, window_seconds=10.0)
        summary = report.summary()
        # Every word found: the head separates speech from silence, and no window
        # boundary or stream piece loses or splits a word (a few stray frames of "speech"
        # in the gaps may add words; they are insertions, not timed).
        assert report.recall >= 0.9, (decoder, result.text)
        assert report.decoded_words <= 1.25 * report.truth_words
        # A frame-exact path puts a start within half a frame of the truth (frames are
        # labelled by their middle); a frame the head gets wrong at an edge adds one.
        assert summary["start_median_ms"] <= FRAME_MS / 2
        assert summary["start_p90_ms"] <= FRAME_MS * 1.5
        assert abs(summary["start_bias_ms"]) <= FRAME_MS / 2
        if decoder is None:
            # Greedy ends come from the last frame of the held character. The head leans
            # to speech (and a frame's features reach 25 ms back), so an end may come one
            # frame late: half a frame plus one.
            assert summary["end_median_ms"] <= FRAME_MS * 1.5
            assert summary["end_p90_ms"] <= FRAME_MS * 2
            assert 0 <= summary["end_bias_ms"] <= FRAME_MS * 1.5
        # (Beam search times one frame per character, so a held "a" ends one frame after
        # it starts: those ends are not the word's and are not checked here.)
        # No drift across the windows or the stream: the last 10 s as good as the first.
        assert report.drift_ms <= FRAME_MS / 2
        assert np.isfinite(report.first_window_ms) and np.isfinite(report.last_window_ms)
