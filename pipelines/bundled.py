"""The configs shipped in ``gfssm.ray_configs``: experiments, search spaces, cluster files.

``--config`` and ``--space`` take a file path or the name of a bundled file
(``gfssm train dna --config quickstart`` reads ``ray_configs/experiments/dna/quickstart.yaml``).
"""

from __future__ import annotations

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


def load_experiment_file(
    task_name: str, config: str | None, base_dir: Path | None = None
) -> tuple[dict[str, Any], str]:
    """The raw experiment mapping and a label of where it came from."""
    name = config or DEFAULT_EXPERIMENT
    path = _user_path(name, base_dir)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_yaml(path), str(path)
    node = _folder("experiments", task_name, f"{name}.yaml")
    if not node.is_file():
        known = bundled_experiments(task_name)
        raise ExperimentError(
            f"--config {name}: no such file, and no bundled experiment {name!r} for task "
            f"{task_name!r}; bundled: {', '.join(known) or 'none'} (or pass a YAML path)"
        )
    return _read_resource(node, f"{task_name}/{name}.yaml (bundled)")


def load_space_file(
    task_name: str, space: str | None, base_dir: Path | None = None
) -> tuple[dict[str, Any], str]:
    """The raw search-space mapping (default: the bundled one named after the task)."""
    name = space or task_name
    path = _user_path(name, base_dir)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_yaml(path), str(path)
    node = _folder("tune", f"{name}.yaml")
    if not node.is_file():
        raise ExperimentError(
            f"--space {name}: no such file, and no bundled search space {name!r}; "
            f"bundled: {', '.join(bundled_spaces()) or 'none'} (or pass a YAML path)"
        )
    return _read_resource(node, f"tune/{name}.yaml (bundled)")


def bundled_studies() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in _folder("studies").iterdir() if p.name.endswith(".yaml")
    )


def load_study_file(name: str, base_dir: Path | None = None) -> tuple[dict[str, Any], str]:
    """The raw study mapping: a YAML path, or the name of a bundled study."""
    path = _user_path(name, base_dir)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_yaml(path), str(path)
    node = _folder("studies", f"{name}.yaml")
    if not node.is_file():
        raise ExperimentError(
            f"study {name}: no such file, and no bundled study {name!r}; bundled: "
            f"{', '.join(bundled_studies()) or 'none'} (or pass a YAML path)"
        )
    return _read_resource(node, f"studies/{name}.yaml (bundled)")
