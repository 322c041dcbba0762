"""Experiments: a YAML file validated into typed sections, plus ``key=value`` overrides.

An experiment file names its task and holds four sections::

    name: quickstart          # shown in run names and the ``preset`` tag
    task_name: dna            # the task plugin (``gfssm.tasks`` entry point)
    model: {preset: gfssm, d_model: 128, n_layer: 4}   # GFSSMConfig preset + fields
    task: {window: 4096}      # the task's own settings (its ``settings_type``)
    train: {steps: 600, lr: 2.0e-3}
    tracking: {register_as: null}

Overrides address any field as ``section.field=value`` (``train.lr=3e-4``,
``model.d_model=64``, ``task.window=2048``); values are parsed as YAML scalars or lists.
Everything is validated once, here, and an unknown key or a bad value is an error listing
what is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from gfssm.config import PRESETS, ConfigError, GFSSMConfig
from gfssm.pipelines.errors import ExperimentError
from gfssm.tasks.base import Task, TaskSettings

SECTIONS = ("model", "task", "train", "tracking")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainConfig(_Section):
    """How training runs: optimisation, schedule, checkpoints and Ray resources."""

    steps: int = Field(1000, ge=1, description="optimizer steps in all")
    batch_size: int = Field(8, ge=1, description="sequences per worker per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr (cosine)")
    warmup_steps: int = Field(100, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null: off")
    seed: int = 0
    log_every: int = Field(10, ge=1, description="steps between logged training metrics")
    eval_every: int = Field(200, ge=1, description="steps between evaluations (and reports)")
    eval_batches: int = Field(16, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="default: batch_size")
    checkpoint_every: int = Field(200, ge=1, description="a multiple of eval_every")
    keep_checkpoints: int = Field(2, ge=1, description="best checkpoints kept (+ the latest)")
    select_metric: str = Field("eval_loss", description="metric for best checkpoint / Tune")
    select_mode: Literal["min", "max"] = "min"
    max_nonfinite: int = Field(10, ge=0, description="skipped non-finite steps before abort")
    stop_on_divergence: bool = Field(
        False, description="end the run when it diverges (studies); its metrics say so"
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: bool | Literal["auto"] = Field("auto", description="auto: when the cluster has GPUs")
    precision: Literal["bf16", "fp32"] = Field("bf16", description="autocast dtype on GPUs")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from a checkpoint")
    storage_path: str = Field("runs", description="run folders (local path or URI)")
    time_budget_minutes: float | None = Field(
        None, gt=0, description="stop (evaluate, checkpoint) after this much wall-clock time"
    )
    fail_at_step: int | None = Field(
        None, ge=1, description="testing aid: the last rank raises at this step once"
    )

    @model_validator(mode="after")
    def _checkpoints_on_reports(self) -> TrainConfig:
        if self.checkpoint_every % self.eval_every:
            raise ValueError(
                f"checkpoint_every={self.checkpoint_every} must be a multiple of "
                f"eval_every={self.eval_every} (checkpoints are taken at evaluations)"
            )
        return self


class TrackingConfig(_Section):
    """Where and how MLflow records the run."""

    experiment: str | None = Field(None, description="MLflow experiment (default: task name)")
    run_name: str | None = Field(None, description="default: <task>-<name>-<time>")
    log_model: bool = Field(True, description="log the best model as an MLflow pyfunc")
    register_as: str | None = Field(None, description="register the pyfunc under this name")
    plots: bool = Field(True, description="log PNG plots of the metric curves")


class Experiment(_Section):
    """A validated experiment: the task's name, its settings, the model, training, tracking."""

    name: str = "custom"
    task_name: str
    description: str = ""
    model: dict[str, Any] = Field(default_factory=lambda: {"preset": "gfssm"})
    task: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @property
    def preset(self) -> str:
        return str(self.model.get("preset", "gfssm"))

    def config_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "preset"}

    def settings(self, task: Task) -> TaskSettings:
        return task.settings(self.task)

    def gfssm_config(self, task: Task) -> GFSSMConfig:
        return task.model_config(self.preset, self.config_overrides(), self.settings(task))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_value(text: str) -> Any:
    """A command-line value as YAML (``[4, 8]``, ``true``, ``null``); numbers YAML leaves as
    strings (``3e-4``) become floats."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", ...]`` -> ``{"train.lr": 0.0003, ...}`` (syntax only)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExperimentError(
                f"override {item!r}: expected key=value, e.g. train.lr=3e-4 or model.d_model=64"
            )
        if "." not in key or key.split(".", 1)[0] not in SECTIONS:
            raise ExperimentError(
                f"override {item!r}: the key must start with one of "
                f"{', '.join(s + '.' for s in SECTIONS)}{_suggest(key.split('.')[0], SECTIONS)}"
                f" (e.g. train.steps=200)"
            )
        out[key] = parse_value(text)
    return out


def _model_field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(GFSSMConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(GFSSMConfig)}


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the raw experiment dict with dotted overrides set (validated later)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for key, value in overrides.items():
        section, field_name = key.split(".", 1)
        if "." in field_name:
            raise ExperimentError(f"override {key}: nested keys below a section are not used")
        target = out.setdefault(section, {})
        if not isinstance(target, dict):
            raise ExperimentError(f"override {key}: section {section!r} is not a mapping")
        target[field_name] = value
    return out


def _valid_keys(section: str, task: Task | None) -> list[str]:
    if section == "train":
        return sorted(TrainConfig.model_fields)
    if section == "tracking":
        return sorted(TrackingConfig.model_fields)
    if section == "model":
        return sorted(["preset", *_model_field_types()])
    return sorted(task.settings_type.model_fields) if task is not None else []


def _format_validation(section: str, err: ValidationError, valid: list[str], source: str) -> str:
    lines = [f"{source}: invalid {section} section:"]
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"])
        if not where:
            lines.append(f"  {section}: {problem['msg']}")
        elif problem["type"] == "extra_forbidden":
            lines.append(
                f"  {section}.{where}: unknown key{_suggest(where, valid)}; valid keys: "
                f"{', '.join(valid)}"
            )
        else:
            lines.append(f"  {section}.{where}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def _suggest(key: str, valid: Sequence[str]) -> str:
    found = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _validate_model(model: Mapping[str, Any], source: str) -> dict[str, Any]:
    types = _model_field_types()
    out: dict[str, Any] = {}
    for key, value in model.items():
        if key == "preset":
            if value not in PRESETS:
                raise ExperimentError(f"{source}: model.preset={value!r}; valid: {PRESETS}")
            out[key] = value
            continue
        if key not in types:
            valid = _valid_keys("model", None)
            raise ExperimentError(
                f"{source}: model.{key}: unknown key{_suggest(key, valid)}; valid keys: "
                f"{', '.join(valid)}"
            )
        try:
            out[key] = TypeAdapter(types[key]).validate_python(value)
        except ValidationError as err:
            msg = err.errors()[0]["msg"]
            raise ExperimentError(f"{source}: model.{key}={value!r}: {msg}") from None
    return out


def build_experiment(
    raw: Mapping[str, Any],
    task: Task,
    overrides: Mapping[str, Any] | None = None,
    *,
    source: str = "experiment",
) -> Experiment:
    """Validate ``raw`` (+ overrides) for ``task``: sections, task settings and model config."""
    merged = apply_overrides(raw, overrides or {})
    merged.setdefault("task_name", task.name)
    if merged["task_name"] != task.name:
        raise ExperimentError(
            f"{source}: written for task {merged['task_name']!r}, not {task.name!r}"
        )
    unknown = sorted(set(merged) - set(Experiment.model_fields))
    if unknown:
        raise ExperimentError(
            f"{source}: unknown top-level key(s) {unknown}"
            f"{_suggest(unknown[0], list(Experiment.model_fields))}; valid keys: "
            f"{', '.join(sorted(Experiment.model_fields))}"
        )
    for section in ("train", "tracking"):
        try:
            merged[section] = (TrainConfig if section == "train" else TrackingConfig)(
                **(merged.get(section) or {})
            )
        except ValidationError as err:
            raise ExperimentError(
                _format_validation(section, err, _valid_keys(section, task), source)
            ) from None
    merged["model"] = _validate_model(merged.get("model") or {"preset": "gfssm"}, source)
    try:
        settings = task.settings(merged.get("task") or {})
    except ValidationError as err:
        raise ExperimentError(
            _format_validation("task", err, _valid_keys("task", task), source)
        ) from None
    merged["task"] = settings.model_dump(mode="json")
    try:
        experiment = Experiment(**merged)
    except ValidationError as err:
        raise ExperimentError(f"{source}: {err}") from None
    try:
        experiment.gfssm_config(task)
    except (ConfigError, TypeError, ValueError) as err:
        raise ExperimentError(f"{source}: the model section does not make a model: {err}") from None
    return experiment


def prepare_experiment(experiment: Experiment, task: Task, base_dir: Path) -> Experiment:
    """The experiment with the task's paths resolved against ``base_dir`` (the user's
    folder) and its inputs checked (:meth:`gfssm.tasks.Task.prepare`), and a local
    ``train.storage_path`` made absolute: Ray workers run in other folders."""
    settings = task.prepare(experiment.settings(task), Path(base_dir))
    train = experiment.train
    storage = train.storage_path
    if "://" not in storage:
        path = Path(storage).expanduser()
        storage = str(path if path.is_absolute() else (Path(base_dir) / path).resolve())
    return experiment.model_copy(
        update={
            "task": settings.model_dump(mode="json"),
            "train": train.model_copy(update={"storage_path": storage}),
        }
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with errors naming the file and line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ExperimentError(f"{path}:{where}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data
