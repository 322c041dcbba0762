import numpy as np
import pytest

from gfssm.tasks import get_task
from gfssm.tasks.dna.markov import MarkovModel, context_lengths
from gfssm.tasks.dna.tokens import encode


def brute_force_probability(train: str, context: str, base: str, alpha: float) -> float:
    """P(base | context) by the smoothing formula, counting substrings directly."""
    p = 0.25
    for j in range(len(context) + 1):
        ctx = context[len(context) - j :]
        counts = {
            b: sum(1 for i in range(j, len(train)) if train[i - j : i + 1] == ctx + b)
            for b in "ACGT"
        }
        p = (counts[base] + alpha * p) / (sum(counts.values()) + alpha)
    return p


def test_probabilities_follow_the_formula_and_sum_to_one(lambda_text):
    train, alpha = lambda_text[:3000], 2.0
    model = MarkovModel(3, alpha).fit(encode(train)[0])
    probe = lambda_text[5000:5040]
    scores = model.score(encode(probe)[0], first=1)
    for i in (1, 2, 3, 10, 39):
        context = probe[max(0, i - 3) : i]
        expected = brute_force_probability(train, context, probe[i], alpha)
        assert np.exp(scores.logprob[i - 1]) == pytest.approx(expected, rel=1e-9)
    total = 0.0
    for b in "ACGT":
        tokens = encode(probe[:20] + b)[0]
        total += np.exp(model.score(tokens).logprob[-1])
    assert total == pytest.approx(1.0, rel=1e-12)


def test_contexts_stop_at_n():
    tokens = encode("ACGNNACGTA")[0]
    assert context_lengths(tokens).tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 3, 4]
    model = MarkovModel(2, 1.0).fit(encode("ACGTACGTAC")[0])
    assert model.score(tokens).target.tolist() == [1, 2, 0, 1, 2, 3, 0]


def test_sparse_high_orders_equal_dense(lambda_text):
    tokens = encode(lambda_text[:20000])[0]
    probe = encode(lambda_text[30000:31000])[0]
    high = MarkovModel(11, 4.0).fit(tokens[:9000]).fit(tokens[9000:], first=0)
    assert high.tables[11].dense is None and high.tables[4].dense is not None
    whole = MarkovModel(11, 4.0).fit(tokens)
    # split fitting loses only the contexts across the cut
    assert abs(high.score(probe).logprob.mean() - whole.score(probe).logprob.mean()) < 1e-3


def test_baseline_counts_only_training_regions(two_contig_fasta):
    task = get_task("dna")
    s = task.settings(
        {
            "fasta": str(two_contig_fasta),
            "window_length": 256,
            "val_contigs": ["right"],
            "markov_order": 2,
        }
    )
    data = task.data(s)
    assert data.markov.bases_seen == 30000
    s2 = task.settings(
        {
            "fasta": str(two_contig_fasta),
            "window_length": 256,
            "val_fraction": 0.1,
            "markov_order": 0,
        }
    )
    assert task.data(s2).markov.bases_seen == 30000 - 3000 + 18502 - 1851
