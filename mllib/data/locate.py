"""Where Omniglot comes from, and where its cache goes.

Search order for the source (the first that is *set* wins; an explicit setting is
never silently skipped):

1. the ``root`` argument (``--root`` on the command line);
2. the ``MLLIB_DATA`` environment variable;
3. the default ``data/`` folder: ``<repository>/data`` when mllib runs from a checkout,
   then ``./data`` in the working directory;
4. a download of the upstream zips (only with ``download=True`` / ``--download``), checked
   against the upstream MD5 sums, into the chosen folder (1 or 2 when set, else the default).

A source folder holds, for each of the two sets ``background`` and ``evaluation``, either
``images_<set>.zip`` or the extracted folder ``images_<set>/`` (also accepted one level down
in ``omniglot-py/``, torchvision's layout). When both are there the zip is used.

Cache folder: the ``cache_dir`` argument, else ``MLLIB_CACHE``, else ``<repository>/data/cache``
in a checkout, else the user cache folder (``$XDG_CACHE_HOME/mllib`` or ``~/.cache/mllib``).
It is never the source folder, which may be read-only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "MLLIB_DATA"
CACHE_ENV = "MLLIB_CACHE"
SETS = ("background", "evaluation")
UPSTREAM_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
UPSTREAM_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}


class OmniglotDataError(RuntimeError):
    """Omniglot is missing, incomplete or corrupt (the message says which and what to do)."""


def upstream_url(set_name: str) -> str:
    """URL of the upstream zip of ``set_name`` (``background`` or ``evaluation``)."""
    return f"{UPSTREAM_BASE}images_{set_name}.zip"


@dataclass(frozen=True)
class OmniglotSource:
    """A located copy of Omniglot: ``paths[set]`` is a zip file or an extracted folder."""

    root: Path
    paths: dict  # {"background": Path, "evaluation": Path}

    def kind(self, set_name: str) -> str:
        return "zip" if self.paths[set_name].suffix == ".zip" else "folder"


def repo_root() -> Path | None:
    """The repository checkout mllib runs from, or ``None`` for an installed package."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file() and (candidate / "mllib").is_dir():
        return candidate
    return None


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mllib"


def default_data_dirs() -> list[Path]:
    """Default source folders, in search order (the first is also the download target)."""
    dirs = []
    repo = repo_root()
    if repo is not None:
        dirs.append(repo / "data")
    cwd_data = Path.cwd() / "data"
    if cwd_data.resolve() not in [d.resolve() for d in dirs]:
        dirs.append(cwd_data)
    if repo is None:
        # an installed package downloads into the user cache, never into the working directory
        dirs.insert(0, user_cache_dir() / "data")
    return dirs


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: argument, else ``$MLLIB_CACHE``, else ``<repo>/data/cache``, else ``~/.cache/mllib``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    repo = repo_root()
    if repo is not None:
        return repo / "data" / "cache"
    return user_cache_dir()


def _find_set(folder: Path, set_name: str) -> Path | None:
    for base in (folder, folder / "omniglot-py"):
        zip_path = base / f"images_{set_name}.zip"
        if zip_path.is_file():
            return zip_path
        dir_path = base / f"images_{set_name}"
        if dir_path.is_dir():
            return dir_path
    return None


def _missing_message(where: str, folder: Path, missing: list[str]) -> str:
    urls = ", ".join(upstream_url(s) for s in missing)
    return (
        f"Omniglot not found: {where} {folder} has no {' / '.join(f'images_{s}.zip' for s in missing)} "
        f"(nor the extracted folders). Point the environment variable {DATA_ENV} (or --root) at a folder "
        f"holding images_background.zip and images_evaluation.zip, or allow the download with --download "
        f"(download=True in Python) to fetch {urls}."
    )


def _download(folder: Path, set_name: str) -> Path:
    try:
        from torchvision.datasets.utils import download_url
    except ImportError as err:  # pragma: no cover - torchvision is a dependency
        raise OmniglotDataError(f"downloading Omniglot needs torchvision ({err})") from err
    folder.mkdir(parents=True, exist_ok=True)
    url = upstream_url(set_name)
    try:
        download_url(url, str(folder), filename=f"images_{set_name}.zip", md5=UPSTREAM_MD5[set_name])
    except Exception as err:
        raise OmniglotDataError(
            f"could not download {url} into {folder} ({err}). Without network access, copy "
            f"images_background.zip and images_evaluation.zip into a folder and set {DATA_ENV} to it."
        ) from err
    path = folder / f"images_{set_name}.zip"
    if not path.is_file():
        raise OmniglotDataError(f"download of {url} did not produce {path} (MD5 mismatch?)")
    return path


def locate_omniglot(root: str | os.PathLike | None = None, download: bool = False) -> OmniglotSource:
    """Find Omniglot (see the module docstring for the order); download only when ``download``."""
    if root is not None:
        candidates, where = [Path(root).expanduser()], "the folder given as root"
    elif os.environ.get(DATA_ENV):
        candidates, where = [Path(os.environ[DATA_ENV]).expanduser()], f"{DATA_ENV}="
    else:
        candidates, where = default_data_dirs(), "the default data folder"
    for folder in candidates:
        found = {s: _find_set(folder, s) for s in SETS}
        if all(found.values()):
            return OmniglotSource(folder, found)
    folder = candidates[0]
    found = {s: _find_set(folder, s) for s in SETS}
    missing = [s for s in SETS if found[s] is None]
    if not download:
        raise OmniglotDataError(_missing_message(where, folder, missing))
    for s in missing:
        found[s] = _download(folder, s)
    return OmniglotSource(folder, found)
