"""CTC decoding: greedy, beam search with lexicon and KenLM, word timestamps, metrics."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from gfssm.tasks.asr.decoding import (
    BeamSearchConfig,
    BeamSearchDecoder,
    GreedyStream,
    greedy_decode,
    greedy_decode_batch,
)
from gfssm.tasks.asr.lm import write_arpa, write_lexicon
from gfssm.tasks.asr.metrics import ErrorRates, char_errors, word_errors
from gfssm.tasks.asr.text import CharVocabulary

VOCAB = CharVocabulary()


def emissions(path: str, *, confidence: float = 8.0, alternatives=None) -> torch.Tensor:
    """(T, V) log-probs whose best path spells ``path`` frame by frame: ``-`` is blank,
    ``_`` the word separator. ``alternatives`` {frame: (char, gap)} puts a second char
    ``gap`` below the best at that frame."""
    T = len(path)
    logits = torch.zeros(T, len(VOCAB))
    for t, ch in enumerate(path):
        key = {"-": "-", "_": "|"}.get(ch, ch)
        logits[t, VOCAB.tokens.index(key)] = confidence
    for t, (ch, gap) in (alternatives or {}).items():
        logits[t, VOCAB.tokens.index(ch)] = confidence - gap
    return torch.log_softmax(logits, dim=-1)


def test_greedy_collapses_repeats_and_times_words():
    #            0123456789012345678
    em = emissions("hhe-ll-lo__-wor-ld-")
    result = greedy_decode(em, VOCAB, frame_seconds=0.02)
    assert result.text == "hello world"
    (hello, world) = result.words
    assert (hello.word, hello.start, hello.end) == ("hello", 0.0, pytest.approx(0.18))
    assert (world.word, world.start, world.end) == (
        "world",
        pytest.approx(0.24),
        pytest.approx(0.36),
    )


def test_greedy_stream_equals_one_shot_across_any_split():
    em = emissions("--hhe-ll-lo__-wor-ld--_a_")
    whole = greedy_decode(em, VOCAB)
    for cut in range(1, em.shape[0]):
        stream = GreedyStream(VOCAB, 0.02)
        stream.feed(em[:cut])
        stream.feed(em[cut:])
        assert stream.finish() == whole


def test_greedy_batch_respects_lengths():
    a, b = emissions("hi_there"), emissions("yo")
    batch = torch.stack([a, torch.cat([b, emissions("zzzzzz")])])
    out = greedy_decode_batch(batch, torch.tensor([8, 2]), VOCAB)
    assert [t.text for t in out] == ["hi there", "yo"]


def test_beam_search_without_lm_matches_greedy_on_clear_emissions():
    em = emissions("-hhe-ll-lo__-wor-ld-")
    decoder = BeamSearchDecoder(VOCAB, BeamSearchConfig(beam_size=8))
    beam = decoder.decode(em)
    greedy = greedy_decode(em, VOCAB)
    assert beam.text == greedy.text
    assert [w.start for w in beam.words] == [w.start for w in greedy.words]
    assert all(b.end <= g.end for b, g in zip(beam.words, greedy.words))
    decoder.begin()
    decoder.step(em[:7])
    decoder.step(em[7:])
    assert decoder.finish() == beam


def test_lexicon_and_kenlm_steer_the_beam(tmp_path):
    # "their" and "there" differ in two letters the acoustics cannot tell apart.
    em = emissions("the-ir-", alternatives={4: ("r", 0.0), 5: ("e", 0.0)})
    lexicon = write_lexicon(["their", "there", "the"], tmp_path / "lexicon.txt")
    assert "there t h e r e |" in lexicon.read_text()
    results = {}
    for preferred in ("their", "there"):
        arpa = write_arpa([preferred] * 20 + ["the"], tmp_path / f"{preferred}.arpa")
        decoder = BeamSearchDecoder(
            VOCAB,
            BeamSearchConfig(beam_size=16, lexicon=str(lexicon), kenlm=str(arpa), lm_weight=2.0),
        )
        results[preferred] = decoder.decode(em).text
    assert results == {"their": "their", "there": "there"}


def test_character_lm_steers_lexicon_free_beam(tmp_path):
    # Frame 2 cannot tell "e" from "a"; a character model of text with "the" decides.
    em = emissions("the_cat", alternatives={2: ("a", 0.0)})
    results = {}
    for word in ("the", "tha"):
        arpa = write_arpa(
            [f"{word} cat"] * 5 + ["a cat"], tmp_path / f"{word}.arpa", order=4, units="chars"
        )
        decoder = BeamSearchDecoder(
            VOCAB, BeamSearchConfig(beam_size=16, kenlm=str(arpa), lm_weight=1.0)
        )
        results[word] = decoder.decode(em).text
    assert results == {"the": "the cat", "tha": "tha cat"}


def test_beam_tokens_limits_the_tokens_tried_a_frame(tmp_path):
    # "a" is a little less likely than "e" at frame 2; the character model wants "tha".
    em = emissions("the_cat", alternatives={2: ("a", 0.5)})
    arpa = write_arpa(["tha cat"] * 5 + ["a cat"], tmp_path / "tha.arpa", order=4, units="chars")
    results = {}
    for tokens in (None, 2, 1):
        config = BeamSearchConfig(beam_size=16, kenlm=str(arpa), lm_weight=1.0)
        config = dataclasses.replace(config, beam_size_token=tokens)
        results[tokens] = BeamSearchDecoder(VOCAB, config).decode(em).text
    assert results == {None: "tha cat", 2: "tha cat", 1: "the cat"}


def test_beam_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.arpa: kenlm file not found"):
        BeamSearchDecoder(VOCAB, BeamSearchConfig(kenlm=str(tmp_path / "missing.arpa")))
    with pytest.raises(FileNotFoundError, match=r"words\.txt: lexicon file not found"):
        BeamSearchDecoder(VOCAB, BeamSearchConfig(lexicon=str(tmp_path / "words.txt")))


def read_arpa(path):
    """(probabilities, backoff weights) by n-gram tuple, as plain floats."""
    prob, bow, order = {}, {}, 0
    for line in path.read_text().splitlines():
        if line.endswith("-grams:"):
            order = int(line[1])
        elif order and line and not line.startswith("\\"):
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            prob[gram] = 10 ** float(fields[0])
            if len(fields) > 2:
                bow[gram] = 10 ** float(fields[2])
    return prob, bow


RANDOM_AB = ["".join(random.Random(i).choice("ab ") for _ in range(40)).strip() for i in range(300)]


@pytest.mark.parametrize(
    ("units", "order", "sentences"),
    [
        ("words", 2, None),
        ("words", 3, None),
        ("chars", 5, None),
        # Every history is followed by (nearly) every unit: the backoff weight must not
        # come out as a cancelled 0/0.
        ("chars", 6, RANDOM_AB),
    ],
)
def test_arpa_models_are_normalised(tmp_path, units, order, sentences):
    sentences = sentences or ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the mat"]
    prob, bow = read_arpa(write_arpa(sentences, tmp_path / "lm.arpa", order=order, units=units))

    def p(gram):  # how KenLM scores: the n-gram, or back off
        if gram in prob:
            return prob[gram]
        return prob[("<unk>",)] if len(gram) == 1 else bow.get(gram[:-1], 1.0) * p(gram[1:])

    units_seen = [g[0] for g in prob if len(g) == 1 and g[0] != "<s>"]
    histories = [g for g in prob if len(g) < order and g != ("</s>",)] + [("<s>",), ("x", "y")]
    for history in histories:
        total = sum(p((*history, w)) for w in units_seen)
        assert total == pytest.approx(1.0, abs=1e-5), history
    assert max(len(g) for g in prob) == order


def test_error_rates_per_utterance_and_overall():
    rates = ErrorRates()
    assert rates.add("the cat sat", "the cat sat") == {"wer": 0.0, "cer": 0.0}
    per = rates.add("a b c d", "a x c")
    assert per["wer"] == pytest.approx(2 / 4)
    assert word_errors("a b c d", "a x c").substitutions == 1
    assert char_errors("abc", "abd").rate == pytest.approx(1 / 3)
    total = rates.summary()
    # Overall = all edits over all reference words, not a mean of utterance rates.
    assert total["wer"] == pytest.approx(2 / 7) and total["utterances"] == 2
    assert word_errors("", "").rate == 0.0 and word_errors("", "extra").rate == float("inf")
    assert word_errors("two words", "").rate == 1.0
