"""Maps the design's fixed folders onto the single import name ``gfssm``.

A static package list silently drops new subfolders from the wheel, so the list is built
with ``find_packages`` for every mapped folder (``tests/test_packaging.py`` checks the wheel).
"""

from setuptools import find_packages, setup

FOLDER_OF_PACKAGE = {
    "gfssm": "gfssm_core",
    "gfssm.kernels": "kernels",
    "gfssm.tasks": "tasks",
    "gfssm.pipelines": "pipelines",
    "gfssm.ray_configs": "ray_configs",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for package, folder in FOLDER_OF_PACKAGE.items():
    package_dir[package] = folder
    packages.append(package)
    for sub in find_packages(folder):
        packages.append(f"{package}.{sub}")
        package_dir[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
