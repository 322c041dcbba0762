import numpy as np
import pytest

from gfssm.tasks.dna.tokens import (
    COMPLEMENT,
    InvalidBaseError,
    N,
    decode,
    encode,
    reverse_complement,
    reverse_complement_text,
)


def test_bases_iupac_and_softmask():
    ids, soft = encode("ACGTacgtRYNnswk")
    assert ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3] + [N] * 7
    assert soft.tolist() == [False] * 4 + [True] * 4 + [False] * 3 + [True] * 4
    assert decode(ids) == "ACGTACGTNNNNNNN"


@pytest.mark.parametrize("bad, column", [("ACGU", 4), ("AC-GT", 3), ("ACG T", 4), ("AC*", 3)])
def test_invalid_character_names_contig_and_position(bad, column):
    with pytest.raises(InvalidBaseError) as err:
        encode(bad, contig="chrX", start=1000)
    message = str(err.value)
    assert "'chrX'" in message
    assert f"position {1000 + column} (1-based)" in message
    assert repr(bad[column - 1]) in message


def test_reverse_complement_of_tokens_matches_text(lambda_text):
    stretch = lambda_text[1000:1300].lower()[:50] + lambda_text[1300:1500] + "NRYacg"
    ids, _ = encode(stretch)
    rc_ids, _ = encode(reverse_complement_text(stretch))
    np.testing.assert_array_equal(reverse_complement(ids), rc_ids)
    np.testing.assert_array_equal(reverse_complement(reverse_complement(ids)), ids)
    assert COMPLEMENT[:4].tolist() == [3, 2, 1, 0]
