"""The files a newcomer, conda, Binder and CI rely on agree with each other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name where they differ
CONDA_NAME = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\s\[]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_names(path: Path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    return {_name(dep) for dep in env["dependencies"] if isinstance(dep, str)}


def test_pyproject_uses_floors_never_pins():
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for req in requirements:
        assert "==" not in req, f"{req!r} pins an exact version; use a floor (>=) so installs do not rot"
    assert project["requires-python"] == ">=3.10"


def test_environment_lists_every_runtime_and_test_dependency():
    project = _pyproject()["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"],
              *project["optional-dependencies"]["notebooks"]]
    have = _conda_names(ROOT / "environment.yml")
    missing = [req for req in wanted if CONDA_NAME.get(_name(req), _name(req)) not in have]
    assert not missing, f"environment.yml lacks {missing} (listed in pyproject.toml)"


def test_environment_is_conda_forge_cpu_and_installs_the_checkout():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "the pytorch channel no longer publishes: conda-forge only"
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("pytorch") and d.endswith("cpu*") for d in deps)
    assert any(d.startswith("torchvision") and d.endswith("cpu*") for d in deps)
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip_part == ["-e ."], "the pip part must install this checkout itself"


def test_binder_environment_matches_root_and_post_build_installs_checkout():
    root = yaml.safe_load((ROOT / "environment.yml").read_text())
    binder = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    root_deps = [d for d in root["dependencies"] if isinstance(d, str)]
    assert binder["dependencies"] == root_deps, "regenerate binder/environment.yml from environment.yml"
    assert binder["channels"] == root["channels"]
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post_build and "-e ." in post_build


def test_ci_runs_the_readme_test_command_with_offline_data():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
    assert "make demo" in readme
    assert "MLLIB_DATA" in ci and "shared/data/omniglot" in ci
