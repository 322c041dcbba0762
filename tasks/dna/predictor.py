"""The MLflow pyfunc of DNA models: sequences in, log2 P and bits per base out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gfssm.tasks.jobs import PredictorSpec, TaskInputError


def predict_sequences(loaded, frame: pd.DataFrame) -> pd.DataFrame:
    """Per sequence: log2 P of bases 2..n given the bases before (N bases add nothing),
    bits per scored base, and the length."""
    from gfssm.tasks.dna.variants.effect import sequence_log2_probs

    if "sequence" not in frame.columns:
        raise TaskInputError(
            f"the dna model needs a 'sequence' column; got columns {list(frame.columns)}"
        )
    sequences = [str(s).upper() for s in frame["sequence"]]
    log2_prob = sequence_log2_probs(loaded.model, sequences)
    scored = np.array([max(1, sum(c in "ACGT" for c in s[1:])) for s in sequences])
    return pd.DataFrame(
        {
            "log2_prob": log2_prob,
            "bits_per_base": -log2_prob / scored,
            "length": [len(s) for s in sequences],
        }
    )


PREDICTOR = PredictorSpec(
    inputs=(("sequence", "string"),),
    outputs=(("log2_prob", "double"), ("bits_per_base", "double"), ("length", "long")),
    example={"sequence": ["ACGTTGCAACGGTTACGATC"]},
    predict=predict_sequences,
)
