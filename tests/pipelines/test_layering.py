"""pipelines/ drives tasks through their public interface only: it imports nothing under a
task's package and never branches on a task's name (tasks own their work)."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
PUBLIC = {"gfssm.tasks", "gfssm.tasks.base", "gfssm.tasks.jobs", "gfssm.tasks.pretrained"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def _task_names() -> set[str]:
    from gfssm.tasks import available_tasks

    return set(available_tasks())


def test_pipelines_import_no_task_internals():
    files = sorted(PIPELINES.rglob("*.py"))
    assert len(files) > 20
    leaks = [
        f"{path.relative_to(PIPELINES)}: {name}"
        for path in files
        for name in _imports(path)
        if name.startswith("gfssm.tasks") and name not in PUBLIC
    ]
    assert leaks == []


def test_pipelines_never_compare_with_a_task_name():
    names = _task_names() | {"dna", "asr"}
    found = []
    for path in sorted(PIPELINES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in names:
                        found.append(f"{path.relative_to(PIPELINES)}:{node.lineno}")
    assert found == []
