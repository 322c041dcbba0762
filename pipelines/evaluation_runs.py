"""An evaluation's numbers in MLflow, beside the model it evaluated.

When a batch job reports metrics (``gfssm eval dna-vep``'s AUROCs, ``gfssm eval asr``'s
WER and CER) and ``--model`` named an MLflow run (a run id, ``runs:/ID/...``,
``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``: :func:`~gfssm.pipelines.model_ref.
model_run_id`), the command records a finished child run under the model's run, in its
experiment: tagged ``gfssm.kind=eval`` with the command and its options, so that
``gfssm runs list`` and the MLflow UI show the evaluation nested under the training run.
A model given as a folder has no run to attach to: nothing is recorded.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping

from mlflow.tracking import MlflowClient

from gfssm.pipelines.tracking import (
    TAG_PREFIX,
    create_run,
    finish_run,
    flatten,
    log_metrics,
    log_params,
    run_tags,
)


def _options(args: argparse.Namespace) -> dict[str, str]:
    """The command's options as MLflow params (no handlers, no unset values)."""
    return flatten({k: v for k, v in vars(args).items() if v is not None and not callable(v)})


def record_evaluation(
    client: MlflowClient,
    model_run: str,
    command: str,
    args: argparse.Namespace,
    metrics: Mapping[str, float],
) -> str:
    """A finished child run of ``model_run`` holding ``metrics``; returns its id."""
    parent = client.get_run(model_run)
    tags = parent.data.tags
    experiment = client.get_experiment(parent.info.experiment_id).name
    eval_tags = run_tags(
        task=tags.get(f"{TAG_PREFIX}task", ""),
        preset=tags.get(f"{TAG_PREFIX}preset", ""),
        model_preset=tags.get(f"{TAG_PREFIX}model_preset", ""),
        kind="eval",
    )
    eval_tags[f"{TAG_PREFIX}command"] = command
    eval_tags[f"{TAG_PREFIX}command_line"] = shlex.join(["gfssm", *sys.argv[1:]])[:5000]
    eval_tags[f"{TAG_PREFIX}evaluates"] = model_run
    run_id = create_run(
        client, experiment=experiment, run_name=command, tags=eval_tags, parent_run_id=model_run
    )
    try:
        log_params(client, run_id, _options(args))
        log_metrics(client, run_id, metrics, step=0)
    except BaseException:
        finish_run(client, run_id, "FAILED")
        raise
    finish_run(client, run_id)
    return run_id
