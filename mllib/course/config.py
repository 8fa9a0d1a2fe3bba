"""The course's delivery settings, read from ``mllib/course_config.json`` (the only place that names them).

* ``repository``: ``https://github.com/<owner>/<repo>``, the repository that Colab installs from
  and that the Colab and Binder badges open; ``null`` until the course is published (then the
  badges say so and the Colab install cell stops with instructions: the course never installs
  code from a placeholder repository that anybody could register).
* ``ref``: the branch or tag pinned by the badges and by the Colab install cell.
* ``student_ref``: the branch the student release is published to (default ``student``): the
  repository with ``notebooks_dir`` replaced by ``make student``'s output and the instructor
  material removed (``docs/instructors.md``, "Publishing the student release"). The badges of
  the student build point there; the instructor notebooks' badges point to ``ref``.
* ``notebooks_dir``: the notebooks' folder inside the repository.
* ``gpu_notebooks``: file-name patterns of notebooks that ask Colab for a GPU runtime.
* ``colab_gpu_type``: the GPU type written into those notebooks' Colab metadata.

Publishing (a fork, or the first publication) is one command from the repository root, which
writes the JSON file and regenerates every badge and install cell (``set_repository``)::

    python -m mllib course set-repository https://github.com/<owner>/<repo> [--ref main]

Editing the JSON file by hand and running ``python -m mllib course sync`` does the same.
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

CONFIG_PATH = Path(__file__).resolve().parents[1] / "course_config.json"
CONFIG_IN_REPOSITORY = Path("mllib") / "course_config.json"  # the same file, relative to a checkout
_REPO_RE = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)$")
_REF_RE = re.compile(r"^[A-Za-z0-9_./-]+$")

COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE_SVG = "https://mybinder.org/badge_logo.svg"


@dataclass(frozen=True)
class CourseConfig:
    repository: str | None
    ref: str
    notebooks_dir: str = "notebooks"
    gpu_notebooks: tuple[str, ...] = ()
    colab_gpu_type: str = "T4"
    student_ref: str = "student"

    def __post_init__(self) -> None:
        if self.repository is None:
            pass
        elif self.repository.endswith(".git") or self.repository.endswith("/") or not _REPO_RE.match(self.repository):
            raise ValueError(f"repository must look like https://github.com/<owner>/<repo> "
                             f"(no trailing slash or .git), got {self.repository!r}")
        if not _REF_RE.match(self.ref) or ".." in self.ref:
            raise ValueError(f"ref must be a branch or tag name (letters, digits, _ . / -), got {self.ref!r}")
        if not _REF_RE.match(self.student_ref) or ".." in self.student_ref or self.student_ref == self.ref:
            raise ValueError(f"student_ref must be a branch name (letters, digits, _ . / -) other than ref "
                             f"({self.ref!r}), got {self.student_ref!r}")
        if not self.notebooks_dir or self.notebooks_dir.startswith("/"):
            raise ValueError(f"notebooks_dir must be a relative folder, got {self.notebooks_dir!r}")

    @property
    def published(self) -> bool:
        """Whether a repository is set (badges and the Colab install cell need one)."""
        return self.repository is not None

    def _need_repository(self) -> None:
        if self.repository is None:
            raise ValueError("the course has no repository yet: run `python -m mllib course set-repository "
                             "https://github.com/<owner>/<repo>` from the repository root")

    @property
    def slug(self) -> str:
        """``owner/repo``."""
        self._need_repository()
        owner, repo = _REPO_RE.match(self.repository).groups()
        return f"{owner}/{repo}"

    @property
    def install_target(self) -> str | None:
        """What pip installs on Colab: ``git+<repository>@<ref>`` (``None`` before publication)."""
        return None if self.repository is None else f"git+{self.repository}@{self.ref}"

    def launch_ref(self, student: bool = False) -> str:
        """The ref a badge opens: ``student_ref`` for the student release, ``ref`` for instructors."""
        return self.student_ref if student else self.ref

    def colab_url(self, notebook: str, student: bool = False) -> str:
        """Colab link of ``notebook`` (a file name inside ``notebooks_dir``) in the instructor
        version (``ref``) or the student release (``student_ref``)."""
        return (f"https://colab.research.google.com/github/{self.slug}/blob/{self.launch_ref(student)}/"
                f"{self.notebooks_dir}/{notebook}")

    def binder_url(self, notebook: str | None = None, student: bool = False) -> str:
        """Binder link opening JupyterLab on the notebooks folder (or on one notebook)."""
        target = self.notebooks_dir if notebook is None else f"{self.notebooks_dir}/{notebook}"
        return f"https://mybinder.org/v2/gh/{self.slug}/{self.launch_ref(student)}?urlpath=lab/tree/{target}"

    def wants_gpu(self, notebook: str) -> bool:
        return any(fnmatch.fnmatch(notebook, pattern) for pattern in self.gpu_notebooks)


def config_path(root: str | Path | None = None) -> Path:
    """The configuration of the checkout at ``root`` when it has one, else the package's own."""
    if root is not None and (Path(root) / CONFIG_IN_REPOSITORY).is_file():
        return Path(root) / CONFIG_IN_REPOSITORY
    return CONFIG_PATH


def load_config(path: str | Path | None = None) -> CourseConfig:
    """Read the course configuration (default: ``mllib/course_config.json``)."""
    path = Path(path) if path is not None else CONFIG_PATH
    if not path.is_file():
        raise FileNotFoundError(f"course configuration not found: {path}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("repository", "ref") if key not in raw]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return load_config_from(raw)


def load_config_from(raw: dict) -> CourseConfig:
    """A :class:`CourseConfig` from the JSON object of a configuration file."""
    return CourseConfig(
        repository=raw["repository"],
        ref=raw["ref"],
        notebooks_dir=raw.get("notebooks_dir", "notebooks"),
        gpu_notebooks=tuple(raw.get("gpu_notebooks", ())),
        colab_gpu_type=raw.get("colab_gpu_type", "T4"),
        student_ref=raw.get("student_ref", "student"),
    )


def set_repository(root: str | Path, repository: str, ref: str | None = None) -> CourseConfig:
    """Write ``repository`` (and ``ref`` when given) into ``<root>/mllib/course_config.json``.

    Only a checkout is changed (never an installed package): ``root`` must hold that file.
    Returns the new configuration; ``sync_course`` then rewrites the badges and install cells.
    """
    path = Path(root) / CONFIG_IN_REPOSITORY
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run this from the root of your copy of the course "
                                f"repository (or pass --root)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["repository"] = repository
    if ref is not None:
        raw["ref"] = ref
    load_config_from(raw)  # validate before writing
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return load_config(path)
