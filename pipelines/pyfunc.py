"""The MLflow pyfunc of a GFSSM model: ``mlflow.pyfunc.load_model(uri).predict(frame)``.

The pyfunc wraps a model directory; ``predict`` is the task's own predictor
(:meth:`gfssm.tasks.Task.predictor`), e.g. ``sequence`` -> ``log2_prob`` for DNA models and
``path`` -> ``text`` for speech models.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from gfssm.tasks.pretrained import load_model


class GFSSMPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the model directory once; ``predict`` runs the task's predictor."""

    def load_context(self, context) -> None:
        from gfssm.pipelines.artifacts import PYFUNC_MODEL_DIR

        self.loaded = load_model(context.artifacts[PYFUNC_MODEL_DIR])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        task = self.loaded.task
        spec = task.predictor()
        if spec is None or spec.predict is None:
            raise ValueError(f"the {task.name!r} task offers no pyfunc predictor")
        missing = [name for name, _ in spec.inputs if name not in frame.columns]
        if missing:
            raise ValueError(
                f"the {task.name} pyfunc needs column(s) {missing}; got {list(frame.columns)}"
            )
        return spec.predict(self.loaded, frame)
