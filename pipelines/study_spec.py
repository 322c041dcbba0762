"""A study: contenders x learning rates x seeds x sequence lengths over one base experiment.

A study file (``ray_configs/studies/<name>.yaml`` or any path) holds::

    name: mqar-cpu
    experiment: {task_name: synthetic, model: {...}, task: {...}, train: {...}}
    contenders: [gfssm, mamba2, transformer]     # names below, or {name: {model fields}}
    learning_rates: [1.0e-3, 1.0e-2]
    seeds: [0, 1]
    lengths: [256]                                # set through length_key
    length_key: task.train_length
    metric: eval_accuracy
    mode: max

Every trial is the base experiment with the contender's model fields, the learning rate,
the seed and the length set, and ``train.stop_on_divergence`` on. With ``match_parameters``
the contenders are brought to the largest parameter count among them by widening (or
adding) the gated MLP of every block, so a comparison is never one of sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gfssm.pipelines.config import Experiment, build_experiment
from gfssm.pipelines.errors import ExperimentError
from gfssm.tasks.base import Task

# Each mechanism of GFSSM alone on top of Mamba-2, and each left out of GFSSM.
MECHANISMS: dict[str, dict[str, Any]] = {
    "fir": {"fir_sizes": [4, 8, 16, 32]},
    "floor": {"A_floor": 1.0e-4},
    "sinks": {"n_sink": 4},
    "init": {"n_init": 4},
}
OFF: dict[str, dict[str, Any]] = {
    "fir": {"fir_sizes": [4]},
    "floor": {"A_floor": 0.0},
    "sinks": {"n_sink": 0},
    "init": {"n_init": 0},
}
CONTENDERS: dict[str, dict[str, Any]] = {
    "gfssm": {"preset": "gfssm"},
    "mamba2": {"preset": "mamba2"},
    "transformer": {"preset": "transformer"},
    **{f"mamba2+{m}": {"preset": "mamba2", **on} for m, on in MECHANISMS.items()},
    **{f"gfssm-{m}": {"preset": "gfssm", **off} for m, off in OFF.items()},
}
# Model fields a contender decides: the base experiment's values for them are dropped.
SWITCHES = ("preset", "mixer", "fir_sizes", "n_sink", "n_init", "A_floor")
MLFLOW_EXPERIMENT = "studies"
GROUPS = {"all": list(CONTENDERS), "main": ["gfssm", "mamba2", "transformer"]}


class StudySpec(BaseModel):
    """A validated study file (unknown keys are errors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    experiment: dict[str, Any]
    contenders: list[str | dict[str, dict[str, Any]]] = Field(default_factory=lambda: ["main"])
    match_parameters: bool = True
    learning_rates: list[float] = Field(..., min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0])
    lengths: list[int] = Field(default_factory=list)
    length_key: str | None = Field(None, description="override key the lengths set")
    metric: str = "eval_loss"
    mode: Literal["min", "max"] = "min"
    length_metric_prefix: str | None = Field(
        None, description="metrics per eval length, e.g. eval_accuracy_L (eval_accuracy_L512)"
    )
    trial_cpus: float = Field(1.0, gt=0)
    trial_gpus: float = Field(0.0, ge=0)

    @field_validator("learning_rates")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(v <= 0 for v in values):
            raise ValueError("learning rates must be > 0")
        return values


@dataclass(frozen=True)
class Trial:
    """One cell of the grid; ``key`` is stable (resuming matches finished trials by it)."""

    key: str
    contender: str
    lr: float
    seed: int
    length: int | None
    experiment: Experiment
    parameters: int


def load_spec(raw: dict[str, Any], source: str, overrides: dict[str, Any]) -> StudySpec:
    try:
        return StudySpec(**{**raw, **overrides})
    except ValidationError as err:
        lines = [f"{source}: invalid study:"]
        for problem in err.errors():
            where = ".".join(str(p) for p in problem["loc"])
            if problem["type"] == "extra_forbidden":
                lines.append(f"  {where}: unknown key; valid: {', '.join(StudySpec.model_fields)}")
            else:
                lines.append(f"  {where}: {problem['msg']}")
        raise ExperimentError("\n".join(lines)) from None


def contender_fields(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """Contender name -> model fields (presets and mechanism switches), in spec order."""
    out: dict[str, dict[str, Any]] = {}
    for item in spec.contenders:
        if isinstance(item, dict):
            out.update({name: dict(fields) for name, fields in item.items()})
        elif item in GROUPS:
            out.update({name: CONTENDERS[name] for name in GROUPS[item]})
        elif item in CONTENDERS:
            out[item] = CONTENDERS[item]
        else:
            known = ", ".join([*GROUPS, *CONTENDERS])
            raise ExperimentError(f"study {spec.name}: unknown contender {item!r}; known: {known}")
    return out


def count_parameters(task: Task, experiment: Experiment) -> int:
    import torch

    with torch.device("meta"):
        model = task.build_model(experiment.gfssm_config(task), experiment.settings(task))
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _with_model(raw: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The base model section without its preset and switches, then the contender's."""
    base = {k: v for k, v in (raw.get("model") or {}).items() if k not in SWITCHES}
    return {**raw, "model": {**base, **fields}}


def matched_models(spec: StudySpec, task: Task, source: str) -> dict[str, tuple[dict, int]]:
    """Contender -> (model section, parameter count), matched when the spec asks for it."""
    models: dict[str, tuple[dict, int]] = {}
    for name, fields in contender_fields(spec).items():
        raw = _with_model(spec.experiment, fields)
        experiment = build_experiment(raw, task, source=f"{source} contender {name}")
        models[name] = (raw["model"], count_parameters(task, experiment))
    if not spec.match_parameters or len(models) < 2:
        return models
    target = max(count for _, count in models.values())
    for name, (model, count) in list(models.items()):
        if count == target:
            continue
        config = build_experiment(
            {**spec.experiment, "model": model}, task, source=source
        ).gfssm_config(task)
        per_unit = 3 * config.d_model * config.n_layer  # a gated MLP unit: in, gate, out
        widened = {**model, "d_mlp": config.d_mlp + round((target - count) / per_unit)}
        experiment = build_experiment({**spec.experiment, "model": widened}, task, source=source)
        models[name] = (widened, count_parameters(task, experiment))
    return models


def trial_key(contender: str, lr: float, seed: int, length: int | None) -> str:
    key = f"{contender}_lr{lr:g}_seed{seed}" + (f"_L{length}" if length else "")
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", key)


def expand(spec: StudySpec, task: Task, source: str) -> list[Trial]:
    """Every trial of the grid, validated (a bad cell is reported before anything runs)."""
    if spec.lengths and not spec.length_key:
        raise ExperimentError(f"{source}: lengths need length_key (e.g. task.train_length)")
    models = matched_models(spec, task, source)
    trials = []
    for contender, (model, parameters) in models.items():
        for length in spec.lengths or [None]:
            for lr in spec.learning_rates:
                for seed in spec.seeds:
                    overrides: dict[str, Any] = {
                        "train.lr": lr,
                        "train.seed": seed,
                        "train.stop_on_divergence": True,
                        "tracking.log_model": False,
                        # trials sit beside their parent run (MLflow nests within one
                        # experiment)
                        "tracking.experiment": MLFLOW_EXPERIMENT,
                    }
                    if length is not None:
                        overrides[str(spec.length_key)] = length
                    key = trial_key(contender, lr, seed, length)
                    experiment = build_experiment(
                        {**spec.experiment, "model": model, "name": f"{spec.name}-{contender}"},
                        task,
                        overrides,
                        source=f"{source} trial {key}",
                    )
                    trials.append(Trial(key, contender, lr, seed, length, experiment, parameters))
    return trials
