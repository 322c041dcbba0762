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
from mlflow.tracking import MlflowClient

import gfssm
from gfssm.pipelines.config import Experiment
from gfssm.pipelines.tracking import metric_history
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
    """Save the model directory as an MLflow pyfunc (``gfssm.pipelines.pyfunc``), log it under
    ``model/``, and register it when asked; returns ``models:/NAME/VERSION`` when registered."""
    with tempfile.TemporaryDirectory(prefix="gfssm-pyfunc-") as tmp:
        weights_only = Path(tmp) / "weights"
        weights_only.mkdir()
        for name in (WEIGHTS_FILE, META_FILE):
            (weights_only / name).write_bytes((model_dir / name).read_bytes())
        target = Path(tmp) / "pyfunc"
        code = Path(tmp) / "gfssm_pyfunc.py"  # models-from-code: no pickled Python objects
        code.write_text(_PYFUNC_CODE)
        task_name = json.loads((model_dir / META_FILE).read_text())["task"]
        with warnings.catch_warnings():
            # Audio models have no inline example (inputs are file paths); the signature
            # documents the call instead.
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            _save_pyfunc(target, code, task_name, weights_only)
        client.log_artifacts(run_id, str(target), PYFUNC_ARTIFACT)
    if not register_as:
        return None
    mlflow.set_tracking_uri(client.tracking_uri)
    version = mlflow.register_model(f"runs:/{run_id}/{PYFUNC_ARTIFACT}", register_as)
    return f"models:/{register_as}/{version.version}"


def _save_pyfunc(target: Path, code: Path, task_name: str, weights_only: Path) -> None:
    from gfssm.pipelines.predictors import INPUT_EXAMPLES, SIGNATURES

    mlflow.pyfunc.save_model(
        str(target),
        python_model=str(code),
        signature=SIGNATURES.get(task_name),
        input_example=INPUT_EXAMPLES.get(task_name),
        artifacts={PYFUNC_MODEL_DIR: str(weights_only)},
        pip_requirements=[f"gfssm=={gfssm.__version__}", "torch", "mlflow", "pandas"],
    )
