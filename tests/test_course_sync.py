"""Colab badges, Colab install cells, GPU metadata and the README block, all from course_config.json."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mllib.course import check_course, load_config, sync_course, sync_notebook
from mllib.course.colab import BADGE_TAG, SETUP_TAG, check_notebook_sync, setup_source
from mllib.course.config import CONFIG_PATH, CourseConfig
from mllib.course.nbio import list_notebooks, notebook_text, read_notebook, write_notebook

ROOT = Path(__file__).resolve().parents[1]
CFG = CourseConfig("https://github.com/someone/course-fork", "v1.2", gpu_notebooks=("05_*.ipynb",))
README = "# Course\n\n<!-- badges:start -->\n<!-- badges:end -->\n\nText.\n"


def make_notebook() -> object:
    return new_notebook(cells=[new_markdown_cell("# 05 MAML on Omniglot"), new_markdown_cell("What you learn."),
                               new_code_cell("import mllib\nprint('device')")])


def make_repo(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    write_notebook(make_notebook(), tmp_path / "notebooks" / "05_maml_omniglot.ipynb")
    nb = make_notebook()
    nb.cells[0].source = "# 01 Learning bias"
    write_notebook(nb, tmp_path / "notebooks" / "01_learning_bias.ipynb")
    (tmp_path / "README.md").write_text(README)
    return tmp_path


OLD_PLACEHOLDER = "mllib-course/learning-to-learn"  # the old placeholder: anybody could register it


def test_shipped_config_is_valid_and_names_no_placeholder_repository():
    cfg = load_config()
    assert CONFIG_PATH.name == "course_config.json" and CONFIG_PATH.parent.name == "mllib"
    assert cfg.repository is None or cfg.repository.startswith("https://github.com/")
    assert OLD_PLACEHOLDER not in (cfg.repository or "") and cfg.ref
    assert cfg.wants_gpu("05_maml_omniglot.ipynb") and not cfg.wants_gpu("01_learning_bias.ipynb")


@pytest.mark.parametrize("repository, ref, message", [
    ("https://github.com/a/b.git", "main", "repository"),
    ("https://gitlab.com/a/b", "main", "repository"),
    ("https://github.com/a/b/", "main", "repository"),
    ("https://github.com/a/b", "bad ref", "ref"),
    ("https://github.com/a/b", "../x", "ref"),
])
def test_config_rejects_bad_values(repository, ref, message):
    with pytest.raises(ValueError, match=message):
        CourseConfig(repository, ref)


def test_urls_follow_colab_and_binder_formats():
    assert CFG.colab_url("01_a.ipynb") == \
        "https://colab.research.google.com/github/someone/course-fork/blob/v1.2/notebooks/01_a.ipynb"
    assert CFG.binder_url() == "https://mybinder.org/v2/gh/someone/course-fork/v1.2?urlpath=lab/tree/notebooks"
    assert CFG.install_target == "git+https://github.com/someone/course-fork@v1.2"


def test_sync_places_badge_after_title_and_setup_as_first_code_cell():
    nb = sync_notebook(make_notebook(), "05_maml_omniglot.ipynb", CFG)
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "markdown", "code", "code"]
    assert BADGE_TAG in nb.cells[1].metadata["tags"]
    assert CFG.colab_url("05_maml_omniglot.ipynb") in nb.cells[1].source
    assert SETUP_TAG in nb.cells[3].metadata["tags"] and nb.cells[3].source == setup_source(CFG)
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"] == "T4"
    again = sync_notebook(nb, "05_maml_omniglot.ipynb", CFG)
    assert notebook_text(again) == notebook_text(nb)  # idempotent
    other = sync_notebook(nb, "01_learning_bias.ipynb", CFG)  # GPU metadata only where configured
    assert "accelerator" not in other.metadata and "colab" not in other.metadata


def test_sync_updates_existing_cells_in_place_when_the_config_changes():
    nb = sync_notebook(make_notebook(), "05_maml_omniglot.ipynb", CFG)
    nb.cells[3].execution_count = 1
    moved = CourseConfig("https://github.com/other/repo", "main", gpu_notebooks=("05_*.ipynb",))
    assert len(check_notebook_sync(nb, "05_maml_omniglot.ipynb", moved)) == 2  # badge and install cell
    new = sync_notebook(nb, "05_maml_omniglot.ipynb", moved)
    assert len(new.cells) == len(nb.cells) and new.cells[3].execution_count == 1
    assert "other/repo" in new.cells[1].source and "git+https://github.com/other/repo@main" in new.cells[3].source
    assert check_notebook_sync(new, "05_maml_omniglot.ipynb", moved) == []


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(setup_source(CFG), "setup", "exec"), {})
    assert calls == [] and out.getvalue() == ""


def fake_pip(calls, returncode=0, stderr=""):
    """A stand-in for subprocess.run that honours check=True like the real one."""
    def run(args, **kwargs):
        calls.append((args, kwargs))
        if kwargs.get("check") and returncode:
            raise subprocess.CalledProcessError(returncode, args, stderr=stderr)
        return subprocess.CompletedProcess(args, returncode, stdout="", stderr=stderr)
    return run


def on_colab_without_mllib(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mllib" else real(name, *a))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


def test_setup_cell_installs_the_configured_ref_on_colab(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(calls))
    on_colab_without_mllib(monkeypatch)
    exec(compile(setup_source(CFG), "setup", "exec"), {})
    ((args, kwargs),) = calls
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    assert args[-1] == "git+https://github.com/someone/course-fork@v1.2"


def test_setup_cell_failure_says_what_to_do_instead_of_a_bare_called_process_error(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(calls, 1, "ERROR: Repository not found."))
    on_colab_without_mllib(monkeypatch)
    with pytest.raises(RuntimeError) as err:
        exec(compile(setup_source(CFG), "setup", "exec"), {})
    message = str(err.value)
    assert "git+https://github.com/someone/course-fork@v1.2" in message and "Repository not found" in message
    assert "!pip install /content/learning_to_learn_course-*.whl" in message and "YOUR_COPY" in message


def test_setup_cell_skips_the_install_when_mllib_is_already_there(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(calls))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(setup_source(CFG), "setup", "exec"), {})  # mllib is importable here
    assert calls == []


def test_unpublished_course_has_no_links_and_its_setup_cell_says_what_to_do(monkeypatch, tmp_path):
    unpublished = CourseConfig(None, "main", gpu_notebooks=("05_*.ipynb",))
    assert unpublished.install_target is None and not unpublished.published
    with pytest.raises(ValueError, match="set-repository"):
        unpublished.colab_url("01_a.ipynb")
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip(calls))
    on_colab_without_mllib(monkeypatch)
    with pytest.raises(RuntimeError, match="no repository") as err:
        exec(compile(setup_source(unpublished), "setup", "exec"), {})
    assert calls == [] and "set-repository" in str(err.value) and ".whl" in str(err.value)
    root = make_repo(tmp_path)
    sync_course(root, unpublished)
    assert check_course(root, unpublished) == []
    text = (root / "README.md").read_text() + "".join(
        notebook_text(read_notebook(p)) for p in list_notebooks(root / "notebooks"))
    assert "colab.research.google.com/github" not in text and "mybinder.org/v2" not in text
    assert "Publishing your copy of the course" in text


def test_set_repository_publishes_everything_in_one_command(tmp_path, capsys):
    from mllib.__main__ import main

    root = make_repo(tmp_path)
    (root / "mllib").mkdir()
    shutil.copy(CONFIG_PATH, root / "mllib" / "course_config.json")
    raw = json.loads((root / "mllib" / "course_config.json").read_text())
    raw["repository"] = None
    (root / "mllib" / "course_config.json").write_text(json.dumps(raw))
    assert main(["course", "set-repository", "https://github.com/me/my-course", "--ref", "v2",
                 "--root", str(root)]) == 0
    cfg = load_config(root / "mllib" / "course_config.json")
    assert (cfg.repository, cfg.ref) == ("https://github.com/me/my-course", "v2")
    assert main(["course", "check", "--root", str(root)]) == 0  # reads ROOT/mllib/course_config.json
    nb = read_notebook(root / "notebooks" / "01_learning_bias.ipynb")
    assert "git+https://github.com/me/my-course@v2" in notebook_text(nb)
    assert "me/my-course/v2" in (root / "README.md").read_text()
    before = (root / "mllib" / "course_config.json").read_text()
    assert main(["course", "set-repository", "http://github.com/me/x.git", "--root", str(root)]) == 2
    assert (root / "mllib" / "course_config.json").read_text() == before
    assert "repository must look like" in capsys.readouterr().err


def test_course_command_without_the_course_extra_names_the_extra(monkeypatch, capsys):
    from mllib.__main__ import main

    for name in [m for m in sys.modules if m == "mllib.course" or m.startswith("mllib.course.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat now raises ModuleNotFoundError
    assert main(["course", "check"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'learning-to-learn-course[course]'" in err and "nbformat" in err


def test_sync_course_and_check_course_on_a_small_repository(tmp_path):
    root = make_repo(tmp_path)
    problems = check_course(root, CFG)
    assert any("expected one cell tagged 'colab-badge'" in p for p in problems)
    assert any(p.startswith("README.md") for p in problems)
    changed = sync_course(root, CFG)
    assert {p.name for p in changed} == {"01_learning_bias.ipynb", "05_maml_omniglot.ipynb", "README.md"}
    assert check_course(root, CFG) == []
    assert sync_course(root, CFG) == []  # nothing left to change
    readme = (root / "README.md").read_text()
    assert CFG.binder_url(student=True) in readme and CFG.colab_url("01_learning_bias.ipynb", student=True) in readme
    assert readme.endswith("<!-- badges:end -->\n\nText.\n")
    nb01 = read_notebook(root / "notebooks" / "01_learning_bias.ipynb")
    assert "accelerator" not in nb01.metadata
    # a fork edits the configuration: the check names every stale place
    fork = CourseConfig("https://github.com/fork/course", "main", gpu_notebooks=("05_*.ipynb",))
    assert len(check_course(root, fork)) == 2 * 2 + 1


def test_sync_needs_the_readme_markers(tmp_path):
    root = make_repo(tmp_path)
    (root / "README.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="badges:start"):
        sync_course(root, CFG)


def test_repository_url_is_written_in_one_place_only():
    """Badges, install cells and the README block are generated; nothing else may name the repository."""
    cfg = load_config()
    needle = cfg.repository or "https://github.com/" + OLD_PLACEHOLDER
    offenders = []
    for path in [*ROOT.glob("mllib/**/*.py"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("tests/*.py"),
                 ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / "environment.yml", ROOT / "binder" / "postBuild"]:
        if path.is_file() and needle in path.read_text(encoding="utf-8"):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"{offenders} name {needle}; read it from mllib/course_config.json"
    assert json.loads(CONFIG_PATH.read_text())["repository"] == cfg.repository


def test_real_notebooks_match_the_configuration_and_the_exercise_convention():
    """Every notebook's badge and Colab install cell match course_config.json (run `course sync`)."""
    folder = ROOT / load_config().notebooks_dir
    if not folder.is_dir() or not list_notebooks(folder):
        pytest.skip("no notebooks yet")
    problems = check_course(ROOT)
    assert problems == [], "\n".join(problems)
