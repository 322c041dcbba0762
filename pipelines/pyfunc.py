"""The MLflow pyfunc of a GFSSM model: ``mlflow.pyfunc.load_model(uri).predict(frame)``.

The pyfunc wraps a model directory; what ``predict`` does depends on the task:

- ``dna``: a frame with a ``sequence`` column -> per sequence ``log_likelihood`` (nats, sum
  over bases after the first), ``bits_per_base`` and ``length``.
- ``asr``: a frame with a ``path`` column (audio files) -> ``text``.

Predictors for other tasks register in :data:`PREDICTORS`.
"""

from __future__ import annotations

from collections.abc import Callable

import mlflow.pyfunc
import pandas as pd

from gfssm.tasks.pretrained import LoadedModel, load_model

PREDICTORS: dict[str, Callable[[LoadedModel, pd.DataFrame], pd.DataFrame]] = {}


def predictor(task_name: str):
    def register(fn):
        PREDICTORS[task_name] = fn
        return fn

    return register


class GFSSMPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the model directory once; ``predict`` runs the task's predictor."""

    def load_context(self, context) -> None:
        from gfssm.pipelines.artifacts import PYFUNC_MODEL_DIR

        self.loaded = load_model(context.artifacts[PYFUNC_MODEL_DIR])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from gfssm.pipelines import predictors  # noqa: F401  (registers the built-in ones)

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        name = self.loaded.task.name
        if name not in PREDICTORS:
            raise ValueError(
                f"no pyfunc predictor for task {name!r}; known: {', '.join(sorted(PREDICTORS))}"
            )
        return PREDICTORS[name](self.loaded, frame)
