"""The configs shipped in ``gfssm.ray_configs``: experiments, search spaces, cluster files.

``--config`` and ``--space`` take a file path or the name of a bundled file
(``gfssm train dna --config quickstart`` reads ``ray_configs/experiments/dna/quickstart.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from gfssm.pipelines.config import read_yaml
from gfssm.pipelines.errors import ExperimentError

DEFAULT_EXPERIMENT = "quickstart"


def _folder(*parts: str):
    node = resources.files("gfssm.ray_configs")
    for part in parts:
        node = node / part
    return node


def bundled_experiments(task_name: str) -> list[str]:
    folder = _folder("experiments", task_name)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def bundled_spaces() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in _folder("tune").iterdir() if p.name.endswith(".yaml")
    )


def _read_resource(node, label: str) -> tuple[dict[str, Any], str]:
    with resources.as_file(node) as path:
        return read_yaml(Path(path)), label


def _user_path(name: str, base_dir: Path | None) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _load_user_or_bundled(
    name: str,
    base_dir: Path | None,
    *,
    folder: tuple[str, ...],
    label: str,
    what: str,
    missing: str,
    known: Callable[[], list[str]],
) -> tuple[dict[str, Any], str]:
    """``name`` as a YAML path (one ending in .yaml/.yml, or any that exists), else the
    bundled ``<folder>/<name>.yaml``, labelled ``<label>/<name>.yaml (bundled)``.

    Neither: an error ``<what> <name>: no such file, and no bundled <missing>`` that lists
    the ``known`` bundled names.
    """
    path = _user_path(name, base_dir)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_yaml(path), str(path)
    node = _folder(*folder, f"{name}.yaml")
    if not node.is_file():
        raise ExperimentError(
            f"{what} {name}: no such file, and no bundled {missing}; bundled: "
            f"{', '.join(known()) or 'none'} (or pass a YAML path)"
        )
    return _read_resource(node, f"{label}/{name}.yaml (bundled)")


def load_experiment_file(
    task_name: str, config: str | None, base_dir: Path | None = None
) -> tuple[dict[str, Any], str]:
    """The raw experiment mapping and a label of where it came from."""
    name = config or DEFAULT_EXPERIMENT
    return _load_user_or_bundled(
        name,
        base_dir,
        folder=("experiments", task_name),
        label=task_name,
        what="--config",
        missing=f"experiment {name!r} for task {task_name!r}",
        known=lambda: bundled_experiments(task_name),
    )


def load_space_file(
    task_name: str, space: str | None, base_dir: Path | None = None
) -> tuple[dict[str, Any], str]:
    """The raw search-space mapping (default: the bundled one named after the task)."""
    name = space or task_name
    return _load_user_or_bundled(
        name,
        base_dir,
        folder=("tune",),
        label="tune",
        what="--space",
        missing=f"search space {name!r}",
        known=bundled_spaces,
    )


def bundled_studies() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in _folder("studies").iterdir() if p.name.endswith(".yaml")
    )


def load_study_file(name: str, base_dir: Path | None = None) -> tuple[dict[str, Any], str]:
    """The raw study mapping: a YAML path, or the name of a bundled study."""
    return _load_user_or_bundled(
        name,
        base_dir,
        folder=("studies",),
        label="studies",
        what="study",
        missing=f"study {name!r}",
        known=bundled_studies,
    )
