"""The wheel installs every folder under the one import name ``gfssm`` and nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER_OF_PACKAGE = {
    "gfssm": "gfssm_core",
    "gfssm/kernels": "kernels",
    "gfssm/tasks": "tasks",
    "gfssm/pipelines": "pipelines",
    "gfssm/ray_configs": "ray_configs",
}
RAW_NAMES = ("gfssm_core", "kernels", "tasks", "pipelines", "ray_configs")


def expected_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under a mapped folder, as a wheel path."""
    out = set()
    for package, folder in FOLDER_OF_PACKAGE.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            out.add(package if rel == Path(".") else f"{package}/{rel.as_posix()}")
    return out


def test_wheel_holds_every_subpackage_and_no_raw_name(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("gfssm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert expected_packages() <= packages, expected_packages() - packages
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"gfssm"}
    assert "gfssm/py.typed" in names
    shipped = {n for n in names if n.startswith("gfssm/ray_configs/") and n.endswith(".yaml")}
    in_repo = {
        "gfssm/ray_configs/" + p.relative_to(REPO / "ray_configs").as_posix()
        for p in (REPO / "ray_configs").rglob("*.yaml")
    }
    assert in_repo and shipped == in_repo, in_repo ^ shipped
    for data in (
        "gfssm/tasks/dna/data/ecoli_536.fa.gz",
        "gfssm/tasks/dna/data/ecoli_536.fa.gz.gzi",
    ):
        assert data in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gfssm = gfssm.pipelines.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_raw_folder_names_are_not_importable_from_outside(tmp_path):
    code = (
        "import importlib.util, sys\n"
        f"names = {RAW_NAMES!r}\n"
        "found = [n for n in names if importlib.util.find_spec(n) is not None\n"
        f"         and {str(REPO)!r} in (importlib.util.find_spec(n).origin or '')]\n"
        "import gfssm, gfssm.kernels, gfssm.tasks, gfssm.pipelines, gfssm.ray_configs\n"
        "print(found)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
