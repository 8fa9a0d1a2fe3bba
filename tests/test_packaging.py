"""The files a newcomer, conda, Binder and CI rely on agree with each other; the package's metadata,
extras and code version are what an installed copy needs (scripts/check_wheel.sh installs one)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import mllib
from mllib.provenance import DISTRIBUTION, _git_commit_of, checkout_root

from repo_scripts import load_script   # tests/ is on sys.path under pytest

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
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["test"], *extras["notebooks"], *extras["course"]]
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


def binder_pins() -> dict[str, str]:
    """``{canonical name: version}`` of binder/requirements.txt; ``AssertionError`` on any line that is not
    an exact pin or the CPU wheel index."""
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("--extra-index-url "):
            assert line.split()[1] == "https://download.pytorch.org/whl/cpu", line
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert match, f"binder/requirements.txt: {line!r} is not an exact pin (regenerate: scripts/binder_lock.py)"
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_binder_is_a_lock_that_satisfies_the_package_and_installs_the_checkout():
    """repo2docker reads binder/requirements.txt (pip) and runtime.txt; postBuild installs the checkout."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    assert not (ROOT / "binder" / "environment.yml").exists(), \
        "repo2docker prefers environment.yml over requirements.txt: the lock would be ignored"
    pins = binder_pins()
    project = _pyproject()["project"]
    wanted = list(project["dependencies"])
    for extra in ("course", "notebooks", "test"):
        wanted += project["optional-dependencies"][extra]
    for text in wanted:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in binder/requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} breaks {text}"
    assert not [n for n in pins if n.startswith("nvidia-") or n == "triton"], "CUDA-only packages pinned"
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), f"runtime.txt {runtime!r}: repo2docker reads python-3.X"
    assert SpecifierSet(project["requires-python"]).contains(runtime.removeprefix("python-") + ".0")
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build, "postBuild installs the checkout without re-resolving"


def test_ci_runs_the_readme_test_command_with_offline_data():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
    assert "make demo" in readme
    assert "MLLIB_DATA" in ci and "shared/data/omniglot" in ci


# A conda match spec as strict parsers (conda, mamba, rattler) accept it: name, then a version
# constraint, then optionally a build string separated by a space ("pytorch >=2.1 cpu*"), never
# the ambiguous "pytorch>=2.1=cpu*".
_MATCH_SPEC = re.compile(r"^[a-z0-9_.-]+(\s*(==|>=|<=|!=|~=|=|>|<)\s*[0-9][0-9a-z.*]*( [a-z0-9_*]+)?)?$")


@pytest.mark.parametrize("path", ["environment.yml"])
def test_conda_specs_are_strict_and_python_is_pinned(path):
    deps = [d for d in yaml.safe_load((ROOT / path).read_text())["dependencies"] if isinstance(d, str)]
    bad = [d for d in deps if not _MATCH_SPEC.match(d)]
    assert bad == [], f"{path}: {bad} are not strict conda match specs (write 'name >=X build*')"
    assert "python=3.12" in deps, f"{path}: pin Python exactly (repo2docker ignores a range)"
    assert "ipywidgets>=8" in deps


def test_metadata_spdx_license_one_version_and_a_matching_setuptools_floor():
    data = _pyproject()
    project = data["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    floor = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    assert tuple(int(x) for x in floor.split(">=")[1].split(".")) >= (77,), "SPDX license needs setuptools>=77"
    assert "version" not in project and "version" in project["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mllib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", mllib.__version__)


def test_distribution_name_is_ours_everywhere():
    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION and DISTRIBUTION != "mllib"  # "mllib" on PyPI is another project
    readme, install = (ROOT / "README.md").read_text(), (ROOT / "docs" / "install.md").read_text()
    assert DISTRIBUTION in readme and DISTRIBUTION in install and "[course,notebooks]" in install
    from mllib.course.colab import setup_source
    from mllib.course.config import CourseConfig
    for cfg in (CourseConfig(None, "main"), CourseConfig("https://github.com/a/b", "main")):
        assert DISTRIBUTION.replace("-", "_") + "-*.whl" in setup_source(cfg)


def test_extras_cover_the_course_command_and_the_notebooks():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["course"]} == {"nbformat", "nbclient", "ipykernel"}
    assert "ipywidgets" in {_name(r) for r in extras["notebooks"]}
    assert {_name(r) for r in extras["course"]} <= {_name(r) for r in extras["test"]}


def _make_dry_run(*args: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-C", str(ROOT), *args, "VENV=/nonexistent/venv"],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_makefile_installs_cpu_torch_from_an_index_only_when_asked():
    lines = _make_dry_run("install", "USE_VENV=1", "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    torch_line = next(i for i, line in enumerate(lines) if "--index-url https://download.pytorch.org/whl/cpu" in line)
    package_line = next(i for i, line in enumerate(lines) if '-e ".[course,notebooks,test]"' in line)
    assert "torch" in lines[torch_line] and "torchvision" in lines[torch_line] and torch_line < package_line
    assert not any("--index-url" in line for line in _make_dry_run("install", "USE_VENV=1"))  # default: offline here


def _bare_python(tmp_path: Path) -> str:
    """A Python without the course: a fresh venv with nothing installed (no pip, seconds to make)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    return str(tmp_path / "bare" / "bin" / "python")


def test_make_uses_a_given_python_that_has_the_course_and_says_so():
    lines = _make_dry_run("student", f"PYTHON={sys.executable}")  # this test's Python has the course
    text = "\n".join(lines)
    assert "-m venv" not in text and "pip install" not in text, "make created a venv beside a ready Python"
    assert any(line.endswith("-m mllib course build --out build/student") and "/nonexistent/venv" not in line
               for line in lines), text
    assert "the course is already installed in" in text and "no /nonexistent/venv created" in text


def test_make_creates_the_venv_when_the_given_python_lacks_the_course(tmp_path):
    text = "\n".join(_make_dry_run("student", f"PYTHON={_bare_python(tmp_path)}"))
    assert "-m venv /nonexistent/venv" in text and '-e ".[course,notebooks,test]"' in text
    assert "/nonexistent/venv/bin/python -m mllib course build" in text


def test_use_venv_forces_the_venv_even_with_a_ready_python():
    text = "\n".join(_make_dry_run("student", f"PYTHON={sys.executable}", "USE_VENV=1"))
    assert "/nonexistent/venv/bin/python -m mllib course build" in text and "already installed" not in text


def _course_python():
    return load_script("scripts/course_python.py")


def test_course_python_reads_the_extras_a_goal_needs_from_the_metadata():
    cp = _course_python()
    requires = ["torch>=2.1", 'nbformat>=5.7; extra == "course"', 'pytest>=7; extra == "test"',
                'ipykernel>=6; extra == "course"', 'ipykernel>=6; extra == "test"']
    assert cp.required_names(requires, []) == ["torch"]
    assert cp.required_names(requires, ["course"]) == ["torch", "nbformat", "ipykernel"]
    assert cp.required_names(requires, ["course", "test"]) == ["torch", "nbformat", "pytest", "ipykernel"]
    assert cp.missing_names(["torch", "pytest"], lambda name: name == "torch") == ["pytest"]
    assert cp.checkout_version() == mllib.__version__


def test_course_python_says_why_not_when_an_extra_is_missing(monkeypatch):
    cp = _course_python()
    real = cp._installed
    monkeypatch.setattr(cp, "_installed", lambda name: name != "nbval" and real(name))
    line = cp.verdict(["course", "test"])
    assert line.startswith("NOTE ") and "nbval" in line and "using .venv" in line and ".[course,test]" in line
    assert cp.verdict(["course"]) == f"USE {sys.executable}"


def test_make_test_runs_course_check_and_the_wheel_check():
    text = "\n".join(_make_dry_run("test"))
    for command in ("-m pytest tests", "-m mllib course check", "--nbval-lax", "verify-student",
                    "scripts/check_wheel.sh"):
        assert command in text, f"make test does not run {command}"


def test_readme_and_its_pages_have_prerequisites_references_citation_help_and_publishing():
    """The README holds prerequisites, help and citation; the rest is on the docs/ page it links."""
    needles = {
        "README.md": ("## Prerequisites", "docs/resources.md", "CITATION.cff", "**Where to ask**",
                      # the notebooks' and colab.py's note sends readers to this README entry
                      "Publishing your copy of the course", "(docs/publishing.md)", "(docs/citing.md)"),
        "docs/publishing.md": ("# Publishing your copy of the course",
                               "python -m mllib course set-repository https://github.com/OWNER/REPO"),
        "docs/install.md": ("--index-url https://download.pytorch.org/whl/cpu", "TORCH_INDEX=", "MLLIB_DATA_CUSTOM"),
        "docs/citing.md": ("CITATION.cff", "**References**"),
    }
    for page, wanted in needles.items():
        text = (ROOT / page).read_text()
        for needle in wanted:
            assert needle in text, f"{page} lacks {needle!r}"
    references = (ROOT / "docs" / "citing.md").read_text().split("**References**")[1]
    for algo in ("maml", "fomaml", "reptile", "metasgd", "anil", "protonet"):
        assert f"`{algo}`" in references, f"docs/citing.md references nothing for {algo}"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _commit_all(repo: Path) -> str:
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    return _git(repo, "rev-parse", "HEAD")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_recorded_only_for_a_checkout_of_this_repository(tmp_path):
    # mllib installed into a venv inside a user's own git repository: that repository's commit is not ours
    user = tmp_path / "user-project"
    installed = user / ".venv" / "lib" / "python3.12" / "site-packages" / "mllib"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    (user / "pyproject.toml").write_text('[project]\nname = "user-project"\n')
    _commit_all(user)
    assert checkout_root(installed) is None and _git_commit_of(installed) is None
    # a checkout of this repository: its commit is recorded
    checkout = tmp_path / "course"
    (checkout / "mllib").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    (checkout / "mllib" / "__init__.py").write_text("")
    commit = _commit_all(checkout)
    assert checkout_root(checkout / "mllib") == checkout
    assert _git_commit_of(checkout / "mllib") == commit
    # a copy of the checkout vendored inside the user's repository (no .git of its own): no commit
    vendored = user / "vendor" / "course"
    shutil.copytree(checkout, vendored, ignore=shutil.ignore_patterns(".git"))
    assert checkout_root(vendored / "mllib") == vendored and _git_commit_of(vendored / "mllib") is None
