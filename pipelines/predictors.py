"""What the MLflow pyfunc of each task does, and the signature it is logged with."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from gfssm.pipelines.pyfunc import predictor
from gfssm.tasks.pretrained import LoadedModel


def _require(frame: pd.DataFrame, column: str, task: str) -> None:
    if column not in frame.columns:
        raise ValueError(
            f"the {task} pyfunc needs a {column!r} column; got columns {list(frame.columns)}"
        )


@predictor("dna")
def predict_dna(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Per sequence: log2 P of bases 2..n given the bases before (N bases add nothing),
    bits per scored base, and the length."""
    from gfssm.tasks.dna.variants.effect import sequence_log2_probs

    _require(frame, "sequence", "dna")
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


@predictor("asr")
def predict_asr(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Per audio file (``path`` column): the transcript."""
    from gfssm.pipelines.speech import transcribe_one

    _require(frame, "path", "asr")
    return pd.DataFrame({"text": [transcribe_one(loaded, str(p))["text"] for p in frame["path"]]})


SIGNATURES = {
    "dna": ModelSignature(
        inputs=Schema([ColSpec("string", "sequence")]),
        outputs=Schema(
            [
                ColSpec("double", "log2_prob"),
                ColSpec("double", "bits_per_base"),
                ColSpec("long", "length"),
            ]
        ),
    ),
    "asr": ModelSignature(
        inputs=Schema([ColSpec("string", "path")]),
        outputs=Schema([ColSpec("string", "text")]),
    ),
}

# Logged with the pyfunc, so the model page shows how to call it.
INPUT_EXAMPLES = {"dna": pd.DataFrame({"sequence": ["ACGTTGCAACGGTTACGATC"]})}
