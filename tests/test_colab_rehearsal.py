"""The Colab launch, rehearsed as far as it can be without Colab.

A fresh virtual environment stands in for a Colab runtime: it sees, as preinstalled packages
outside it (a ``.pth`` line, the way Colab's system site-packages are outside a user's reach),
torch, numpy, matplotlib and everything the course's install needs, taken from the course's own
environment; the course itself is not there. ``google.colab`` is in ``sys.modules``, as on Colab.
Then the practice edition's first notebook, published with a GitHub address (``course
set-repository``), runs its install cell unchanged: git is told (``url.<file>.insteadOf``) to fetch
that address from a clone of this repository, and pip runs with no index (``PIP_NO_INDEX``), so
it can only reuse what is preinstalled, and without build isolation (the preinstalled setuptools
builds the wheel). The rehearsal then requires:

* pip installed the course and nothing else, and the preinstalled torch, numpy and matplotlib are
  the ones imported afterwards (same version, same file): the install replaced none of them;
* ``mllib`` is imported from the fresh environment, not from this checkout;
* the notebook's cells up to its parameters cell run.

What it cannot rehearse: Colab's own versions of torch and numpy (the course environment's stand
in for them; ``test_the_install_pins_nothing_colab_provides`` checks the requirements leave
older Colab versions alone), the network, and GitHub.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from mllib.course.colab import SETUP_TAG, sync_notebook
from mllib.course.config import CourseConfig, load_config
from mllib.course.nbio import read_notebook, source, tags
from mllib.provenance import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "practice" / "01_learning_bias.ipynb"
PUBLISHED = CourseConfig("https://github.com/rehearsal/learning-to-learn", load_config().ref)
PREINSTALLED = ("torch", "numpy", "matplotlib")
# Versions Colab has shipped (2024-2025): the course's requirements must accept every one of them, so
# the install never upgrades or downgrades what Colab provides.
COLAB_VERSIONS = {"torch": "2.5.1", "torchvision": "0.20.1", "numpy": "1.26.4", "matplotlib": "3.8.0",
                  "tqdm": "4.66.5", "pillow": "10.4.0"}
BUILD_TOOLS = ("pip", "setuptools")       # Colab has both; setuptools builds the course's wheel


def _closure(names, extras_of=None) -> set[str]:
    """The distributions that ``names`` need, recursively (markers evaluated, extras followed)."""
    seen, todo = set(), [(n, set()) for n in names]
    while todo:
        name, extras = todo.pop()
        key = (metadata.distribution(name).metadata["Name"].lower(), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, set(req.extras)))
    return {name for name, _ in seen}


def _base_requirements() -> list[Requirement]:
    return [Requirement(r) for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]


def _preinstalled_folder(where: Path) -> Path:
    """A folder of links to the distributions a Colab-like runtime has (never the course itself)."""
    folder = where / "colab-preinstalled"
    folder.mkdir()
    names = _closure([r.name for r in _base_requirements()] + list(BUILD_TOOLS))
    for name in sorted(names):
        dist = metadata.distribution(name)
        site = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            if (site / top).exists() and not (folder / top).exists() and not top.endswith(".pth"):
                (folder / top).symlink_to(site / top)
    assert not (folder / "mllib").exists(), "the course must not be preinstalled"
    return folder


def _fresh_venv(where: Path, preinstalled: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "colab")], check=True)
    python = where / "colab" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "colab-preinstalled.pth").write_text(f"{preinstalled}\n")
    return python


def _repository(where: Path) -> Path:
    """A clone of this repository's HEAD whose branch ``PUBLISHED.ref`` is that commit."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    repo = where / "repo"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "update-ref", f"refs/heads/{PUBLISHED.ref}", head], check=True)
    return repo


PROBE = """
import importlib, importlib.util, json
found = {name: [module.__version__, module.__file__]
         for name, module in ((n, importlib.import_module(n)) for n in %r)}
found["mllib importable"] = importlib.util.find_spec("mllib") is not None
print("PROBE", json.dumps(found))
""" % (PREINSTALLED,)


def _probe(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith("PROBE "))[6:])


def _run(python: Path, code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _first_cells(nb) -> list[str]:
    """The code cells of ``nb`` up to and including the one tagged ``parameters``."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    end = next(i for i, c in enumerate(cells) if "parameters" in tags(c))
    return [source(c) for c in cells[: end + 1]]


RUN_CELLS = """
import json, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")     # as on a Colab runtime
cells = json.load(open(%r))
namespace = {"__name__": "__main__"}
for number, cell in enumerate(cells):
    exec(compile(cell, f"cell {number}", "exec"), namespace)
import mllib
print("MLLIB", mllib.__file__)
""" + PROBE                                       # what the cells imported after the install


@pytest.mark.skipif(not (ROOT / ".git").exists() or sys.platform == "win32",
                    reason="needs the git repository (a clone to install from) and a POSIX venv layout")
def test_the_colab_install_cell_installs_only_the_course_and_the_first_cells_run(tmp_path):
    nb = sync_notebook(read_notebook(NOTEBOOK), NOTEBOOK.name, PUBLISHED)   # as after set-repository
    cells = _first_cells(nb)
    setup = next(source(c) for c in nb.cells if SETUP_TAG in tags(c))
    assert cells[0] == setup and PUBLISHED.install_target in setup
    python = _fresh_venv(tmp_path, _preinstalled_folder(tmp_path))
    repo = _repository(tmp_path)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f'[url "file://{repo}"]\n\tinsteadOf = {PUBLISHED.repository}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "GIT_"))}
    # PIP_NO_BUILD_ISOLATION=0 turns build isolation off (pip reads "no-" options from the environment
    # that way); with isolation on and no index the build could not get setuptools and would fail.
    env.update(GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1", PIP_NO_INDEX="1",
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
               MPLBACKEND="Agg", MLLIB_PROFILE="quick", MLLIB_DEVICE="cpu", HOME=str(tmp_path))
    work = tmp_path / "content"                        # Colab's working folder: not this checkout
    work.mkdir()
    probed = _run(python, PROBE, env, work)
    assert probed.returncode == 0, probed.stderr[-2000:]
    before = _probe(probed.stdout)
    assert before.pop("mllib importable") is False, "the course must not be installed yet"

    (work / "cells.json").write_text(json.dumps(cells))
    ran = _run(python, RUN_CELLS % str(work / "cells.json"), env, work)
    assert ran.returncode == 0, f"the install cell or a first cell failed:\n{ran.stdout[-1500:]}\n{ran.stderr[-3000:]}"
    after = _probe(ran.stdout)
    assert after.pop("mllib importable") is True
    assert after == before, "the install replaced a preinstalled package"
    venv_site = python.parent.parent / "lib"
    installed = sorted(p.name for p in venv_site.glob("python*/site-packages/*")
                       if p.name not in ("colab-preinstalled.pth", "__pycache__"))
    course = DISTRIBUTION.replace("-", "_")
    others = [n for n in installed if n != "mllib" and not n.startswith(course)]
    assert "mllib" in installed and others == [], f"pip installed more than the course: {others}"
    mllib_file = next(line for line in ran.stdout.splitlines() if line.startswith("MLLIB ")).split(" ", 1)[1]
    assert Path(mllib_file).is_relative_to(python.parent.parent), f"mllib came from {mllib_file}, not the fresh install"


def test_the_install_pins_nothing_colab_provides():
    """Every requirement of the install cell (the course's base requirements) accepts Colab's versions of
    what Colab already has, so pip leaves them alone; none is pinned or capped."""
    for req in _base_requirements():
        colab = COLAB_VERSIONS.get(req.name.lower())
        assert colab is not None, f"{req.name}: is it on Colab? add it to COLAB_VERSIONS or drop the requirement"
        assert all(spec.operator in (">=", ">") for spec in req.specifier), f"{req}: pin or cap on a Colab package"
        assert req.specifier.contains(Version(colab)), f"{req} would replace Colab's {req.name} {colab}"


# ----------------------------------------------------------------------------- Binder
def test_binder_files_are_what_repo2docker_reads():
    """repo2docker reads only binder/ when it exists: requirements.txt (pip, a lock of the tested
    environment), runtime.txt (the Python) and postBuild (executable, run after the repository is
    copied): it installs the checkout without re-resolving anything (--no-deps), so the lock must
    hold every requirement of the course and its notebooks (tests/test_packaging.py checks the pins)."""
    binder = ROOT / "binder"
    assert {p.name for p in binder.iterdir()} == {"requirements.txt", "runtime.txt", "postBuild"}, \
        "repo2docker combines binder/ files in ways that are easy to get wrong: requirements.txt, runtime.txt " \
        "and postBuild only (an environment.yml would take precedence and the lock would be ignored)"
    mode = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-s", "binder/postBuild"], capture_output=True,
                          text=True).stdout.split()
    assert not mode or mode[0] == "100755", "binder/postBuild must be executable in git (git update-index --chmod=+x)"
    post = (binder / "postBuild").read_text()
    assert post.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in post
    assert "pip install --no-deps -e ." in post, "postBuild must not let pip re-resolve the locked packages"
    lines = (binder / "requirements.txt").read_text().splitlines()
    names = {re.split(r"==", line, maxsplit=1)[0].lower().replace("_", "-") for line in lines
             if line and not line.startswith(("#", "--"))}
    wanted = [Requirement(r) for r in metadata.requires(DISTRIBUTION) or []
              if "extra ==" not in r or 'extra == "notebooks"' in r or 'extra == "course"' in r]
    missing = [str(r) for r in wanted if r.name.lower().replace("_", "-") not in names]
    assert missing == [], f"binder/requirements.txt lacks {missing} (postBuild installs with --no-deps)"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines, "Binder has no GPU: CPU wheels"
