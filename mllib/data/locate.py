"""Where Omniglot comes from, and where its cache goes.

Search order for the source (the first that is *set* wins; an explicit setting is
never silently skipped):

1. the ``root`` argument (``--root`` on the command line);
2. the ``MLLIB_DATA`` environment variable;
3. the default ``data/`` folder: ``<repository>/data`` when mllib runs from a checkout,
   then ``./data`` in the working directory;
4. a download of the upstream zips (only with ``download=True`` / ``--download``), over https
   only, into the chosen folder (1 or 2 when set, else the default): each zip is written to a
   temporary name, checked against the upstream MD5 sum, and only then renamed to its final name,
   so a failed, corrupt or interrupted download never leaves a zip behind.

A source folder holds, for each of the two sets ``background`` and ``evaluation``, either
``images_<set>.zip`` or the extracted folder ``images_<set>/`` (also accepted one level down
in ``omniglot-py/``, torchvision's layout). When both are there the zip is used.

Every zip that is used is checked first (``verify_zip``): it must be the upstream zip (its MD5
sum) or hold exactly the upstream images (a rebuilt container, such as an offline mirror: the
same member names, sizes and CRC-32 sums, which ``zipfile`` checks again on every read). Anything
else (a partial download, a corrupt or different copy) is an :class:`OmniglotDataError` that says
how to fetch it again. A deliberate custom copy (a subset, other images) is used with a
:class:`CustomOmniglotWarning` when ``MLLIB_DATA_CUSTOM=1``; its results are not comparable with
the standard protocol. Extracted folders are not checked.

Cache folder: the ``cache_dir`` argument, else ``MLLIB_CACHE``, else ``<repository>/data/cache``
in a checkout, else the user cache folder (``$XDG_CACHE_HOME/mllib`` or ``~/.cache/mllib``).
It is never the source folder, which may be read-only.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mllib.provenance import checkout_root

DATA_ENV = "MLLIB_DATA"
CACHE_ENV = "MLLIB_CACHE"
CUSTOM_ENV = "MLLIB_DATA_CUSTOM"
SETS = ("background", "evaluation")
UPSTREAM_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
UPSTREAM_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
# The upstream images, whatever zip container holds them: ``content_digest`` of the zips (SHA-256
# over the sorted "name, size, CRC-32" of every PNG member). Computed from a copy whose PNGs and
# names are byte-identical to upstream's in rebuilt containers (the course's offline mirror).
UPSTREAM_CONTENT = {
    "background": "f31605405d43c72ef623a215eb7f7aa9bd2d13c52707452db5844dbdad433c3f",
    "evaluation": "053a592784ff3d1185a984385bb1daa7aa56f3124dfdd17a60265fa01426e17d",
}
_STALE_PART_SECONDS = 3600  # a temporary download file untouched this long belongs to a dead download


class OmniglotDataError(RuntimeError):
    """Omniglot is missing, incomplete or corrupt (the message says which and what to do)."""


class CustomOmniglotWarning(UserWarning):
    """A zip that is not the upstream Omniglot is used because ``MLLIB_DATA_CUSTOM=1``."""


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
    return checkout_root()


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


# ------------------------------------------------------------------ checking a zip

_verified: dict = {}  # (path, size, mtime_ns) -> verdict, so one process checks a file once


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(path: Path) -> str:
    """SHA-256 over the sorted ``name, size, CRC-32`` of the PNG members of the zip at ``path``
    (reads only the zip's directory; the same for any container holding the same images)."""
    with zipfile.ZipFile(path) as zf:
        rows = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist() if i.filename.endswith(".png"))
    digest = hashlib.sha256()
    for name, size, crc in rows:
        digest.update(f"{name}\0{size}\0{crc:08x}\n".encode())
    return digest.hexdigest()


def custom_copies_allowed() -> bool:
    """``MLLIB_DATA_CUSTOM`` is set to 1 (or true/yes): zips other than upstream's are used, with a warning."""
    return os.environ.get(CUSTOM_ENV, "").strip().lower() in ("1", "true", "yes")


def verify_zip(path: str | os.PathLike, set_name: str) -> str:
    """Check the zip of ``set_name`` at ``path`` against the upstream values.

    Returns ``"upstream"`` (the upstream file, by MD5), ``"upstream-images"`` (a rebuilt zip holding
    exactly the upstream images) or ``"custom"`` (anything else, only with ``MLLIB_DATA_CUSTOM=1``,
    with a :class:`CustomOmniglotWarning`). Raises :class:`OmniglotDataError` for a file that is not
    a readable zip, and for a custom copy without ``MLLIB_DATA_CUSTOM=1``.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        md5 = file_md5(path)
        if md5 == UPSTREAM_MD5[set_name]:
            verdict = "upstream"
        else:
            try:
                same = content_digest(path) == UPSTREAM_CONTENT[set_name]
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise OmniglotDataError(
                    f"Omniglot source {path} is corrupt or truncated: not a readable zip file ({err}; "
                    f"{st.st_size:,} bytes, MD5 {md5}), perhaps an interrupted download. Delete it and "
                    f"fetch it again with `python -m mllib data --download` (download=True in Python), "
                    f"or copy a good images_{set_name}.zip there."
                ) from err
            verdict = "upstream-images" if same else f"custom:{md5}"
        _verified[key] = verdict
    verdict = _verified[key]
    if not verdict.startswith("custom"):
        return verdict
    md5 = verdict.split(":", 1)[1]
    what = (f"{path} ({st.st_size:,} bytes, MD5 {md5}) is not the upstream images_{set_name}.zip "
            f"(MD5 {UPSTREAM_MD5[set_name]}) and does not hold the same images")
    if not custom_copies_allowed():
        raise OmniglotDataError(
            f"Omniglot: {what}: a partial or corrupt download, or a different copy. Delete it and fetch "
            f"it again with `python -m mllib data --download` (download=True in Python). To use a "
            f"deliberate custom copy anyway (a subset, other images), set {CUSTOM_ENV}=1; its results are "
            f"not comparable with the standard Omniglot protocol."
        )
    warnings.warn(f"{what}; used because {CUSTOM_ENV}=1 (results are not comparable with the standard "
                  f"Omniglot protocol)", CustomOmniglotWarning, stacklevel=3)
    return "custom"


# ------------------------------------------------------------------ downloading

class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to https only (never downgrade to plain http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith("https://"):
            raise OmniglotDataError(f"{req.full_url} redirects to {newurl}, which is not https; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_https(url: str, timeout: float = 60.0):
    if not url.lower().startswith("https://"):
        raise OmniglotDataError(f"refusing to download {url}: only https is used")
    opener = urllib.request.build_opener(_HttpsOnlyRedirects)
    response = opener.open(urllib.request.Request(url, headers={"User-Agent": "mllib"}), timeout=timeout)
    final = response.geturl()
    if not final.lower().startswith("https://"):
        response.close()
        raise OmniglotDataError(f"{url} ended at {final}, which is not https; refused")
    return response


def _remove_stale_parts(folder: Path, set_name: str) -> None:
    """Remove temporary files of earlier downloads that were killed (untouched for an hour)."""
    for part in folder.glob(f".images_{set_name}.zip.*.part"):
        try:
            if time.time() - part.stat().st_mtime > _STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass


def _fetch(url: str, dest: Path, progress: bool, desc: str) -> str:
    """Stream ``url`` into ``dest``; return the MD5 of what was written."""
    from tqdm.auto import tqdm

    digest = hashlib.md5()
    with _open_https(url) as response, open(dest, "wb") as handle:
        total = getattr(response, "length", None)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                  disable=bool(os.environ.get("CI")) or not progress, leave=False) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _download(folder: Path, set_name: str, progress: bool = True) -> Path:
    """Download the upstream zip of ``set_name`` into ``folder`` (temporary name, MD5, rename)."""
    url = upstream_url(set_name)
    final = folder / f"images_{set_name}.zip"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OmniglotDataError(f"cannot create the data folder {folder} ({err})") from err
    _remove_stale_parts(folder, set_name)
    part = folder / f".images_{set_name}.zip.{os.getpid()}.part"
    try:
        md5 = _fetch(url, part, progress, final.name)
        if md5 != UPSTREAM_MD5[set_name]:
            raise OmniglotDataError(
                f"the download of {url} has MD5 {md5}, not the upstream {UPSTREAM_MD5[set_name]} "
                f"(a corrupted transfer or a changed file); nothing was kept. Try again later, or copy "
                f"images_{set_name}.zip from elsewhere into {folder}."
            )
        os.replace(part, final)
    except OmniglotDataError:
        raise
    except (OSError, urllib.error.URLError, ValueError) as err:
        raise OmniglotDataError(
            f"could not download {url} into {folder} ({err}). Without network access, copy "
            f"images_background.zip and images_evaluation.zip into a folder and set {DATA_ENV} to it."
        ) from err
    finally:
        try:
            part.unlink()
        except FileNotFoundError:
            pass
    _verified[(str(final.resolve()), final.stat().st_size, final.stat().st_mtime_ns)] = "upstream"
    return final


def locate_omniglot(root: str | os.PathLike | None = None, download: bool = False,
                    progress: bool = True) -> OmniglotSource:
    """Find Omniglot (see the module docstring for the order); download only when ``download``.

    Every zip found is checked with :func:`verify_zip`; ``progress`` shows a download's progress bar
    (never when ``$CI`` is set).
    """
    if root is not None:
        candidates, where = [Path(root).expanduser()], "the folder given as root"
    elif os.environ.get(DATA_ENV):
        candidates, where = [Path(os.environ[DATA_ENV]).expanduser()], f"{DATA_ENV}="
    else:
        candidates, where = default_data_dirs(), "the default data folder"
    for folder in candidates:
        found = {s: _find_set(folder, s) for s in SETS}
        if all(found.values()):
            return _checked(OmniglotSource(folder, found))
    folder = candidates[0]
    found = {s: _find_set(folder, s) for s in SETS}
    missing = [s for s in SETS if found[s] is None]
    if not download:
        raise OmniglotDataError(_missing_message(where, folder, missing))
    for s in missing:
        found[s] = _download(folder, s, progress=progress)
    return _checked(OmniglotSource(folder, found))


def _checked(source: OmniglotSource) -> OmniglotSource:
    for set_name in SETS:
        if source.kind(set_name) == "zip":
            verify_zip(source.paths[set_name], set_name)
    return source
