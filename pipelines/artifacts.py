"""What a finished run leaves in MLflow: config, curve plots, best checkpoint, pyfunc model."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and Ray workers

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

import gfssm
from gfssm.pipelines.config import Experiment
from gfssm.pipelines.tracking import metric_history
from gfssm.tasks.base import get_task
from gfssm.tasks.pretrained import META_FILE, WEIGHTS_FILE

CONFIG_ARTIFACT = "config/experiment.yaml"
BEST_CHECKPOINT_ARTIFACT = "best_checkpoint"
PYFUNC_ARTIFACT = "model"
PYFUNC_MODEL_DIR = "model_dir"  # the key of the model directory among the pyfunc's artifacts
_PYFUNC_CODE = (
    "from mlflow.models import set_model\n"
    "from gfssm.pipelines.pyfunc import GFSSMPyfunc\n"
    "set_model(GFSSMPyfunc())\n"
)
_CURVE_GROUPS = (("train_loss", "eval_loss"), ("lr",), ("grad_norm",), ("items_per_s",))


def log_experiment(client: MlflowClient, run_id: str, experiment: Experiment, model_json: str):
    client.log_text(run_id, experiment.to_yaml(), CONFIG_ARTIFACT)
    client.log_text(run_id, model_json, "config/model.json")


def plot_curves(client: MlflowClient, run_id: str) -> list[str]:
    """PNG plots of the run's curves (loss, eval metrics, lr, ...); returns artifact paths."""
    keys = sorted(client.get_run(run_id).data.metrics)
    groups = [list(g) for g in _CURVE_GROUPS]
    groups += [[k] for k in keys if k.startswith("eval_") and k != "eval_loss"]
    written = []
    for group in groups:
        series = {k: metric_history(client, run_id, k) for k in group if k in keys}
        series = {k: v for k, v in series.items() if len(v) > 0}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, points in series.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, label=key)
        ax.set_xlabel("step")
        ax.set_title(" / ".join(series))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = f"plots/{group[0]}.png"
        client.log_figure(run_id, fig, path)
        plt.close(fig)
        written.append(path)
    return written


def log_best_checkpoint(client: MlflowClient, run_id: str, checkpoint_dir: Path) -> None:
    client.log_artifacts(run_id, str(checkpoint_dir), BEST_CHECKPOINT_ARTIFACT)


def log_pyfunc(
    client: MlflowClient,
    run_id: str,
    model_dir: Path,
    *,
    register_as: str | None = None,
) -> str | None:
    """Log the model directory as an MLflow model (a pyfunc, ``gfssm.pipelines.pyfunc``) of
    the run: it shows under the run's logged models and can be registered. Registers it
    when asked; returns ``models:/NAME/VERSION`` when registered."""
    meta = json.loads((model_dir / META_FILE).read_text())
    spec = get_task(meta["task"]).predictor()
    with tempfile.TemporaryDirectory(prefix="gfssm-pyfunc-") as tmp:
        weights_only = Path(tmp) / "weights"
        weights_only.mkdir()
        for name in (WEIGHTS_FILE, META_FILE):
            (weights_only / name).write_bytes((model_dir / name).read_bytes())
        code = Path(tmp) / "gfssm_pyfunc.py"  # models-from-code: no pickled Python objects
        code.write_text(_PYFUNC_CODE)
        mlflow.set_tracking_uri(client.tracking_uri)
        with warnings.catch_warnings(), mlflow.start_run(run_id=run_id):
            warnings.filterwarnings("ignore", message=".*input example.*")
            info = mlflow.pyfunc.log_model(
                name=PYFUNC_ARTIFACT,
                python_model=str(code),
                artifacts={PYFUNC_MODEL_DIR: str(weights_only)},
                signature=_signature(spec),
                input_example=pd.DataFrame(dict(spec.example)) if spec and spec.example else None,
                pip_requirements=[f"gfssm=={gfssm.__version__}", "torch", "mlflow", "pandas"],
                tags={"gfssm.task": meta["task"]},
            )
    if not register_as:
        return None
    version = mlflow.register_model(info.model_uri, register_as)
    return f"models:/{register_as}/{version.version}"


def _signature(spec):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    if spec is None:
        return None
    return ModelSignature(
        inputs=Schema([ColSpec(kind, name) for name, kind in spec.inputs]),
        outputs=Schema([ColSpec(kind, name) for name, kind in spec.outputs]),
    )
