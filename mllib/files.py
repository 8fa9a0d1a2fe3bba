"""Writing files safely: outputs checked before the work, atomic replacement, errors that name the path.

* ``check_output_dir(path, what)`` / ``check_output_file(path, what)``: make sure a folder (the
  parent of a file) exists and takes a new file, *before* minutes of work are spent; else an
  ``OSError`` that names the path.
* ``atomic_write(path)``: a file handle on a temporary file beside ``path`` (``.NAME.tmp-PID-XXXX``),
  fsynced and renamed over ``path`` at the end, so ``path`` is always either the old or the new
  file; ``atomic_write_text(path, text)`` for text. ``append_text(path, text)`` appends.
* ``remove_orphaned_temp_files(folder)``: delete the temporary files of writers that were killed
  (their PID is no longer alive); call it where no other process writes (a locked run folder,
  the cache folder).
* ``describe_os_error(err)``: the one line the command line prints, e.g.
  ``no space left on device: runs/demo/checkpoint.pt``.

Every ``OSError`` leaving these helpers carries the file name (a write to a full disk raises one
without it).
"""
from __future__ import annotations

import errno
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)(-[A-Za-z0-9]+)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (a PID we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block with ``path`` as its file name when it has none."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create folder ``path`` (and its parents) and check that a file can be written in it.

    Raises ``OSError`` naming the path (``what`` says which argument it came from) when ``path``
    is a file, lies below a file, has a too-long name, or cannot be written to.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is a file, not a folder", str(path))
    with naming(path):
        path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write-test{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    with naming(path):
        probe.touch()
        probe.unlink()
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check that file ``path`` can be written (its folder is created); ``OSError`` naming it if not."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError(f"{what} must be a file path, got {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{what} is a folder, not a file", str(path))
    try:
        check_output_dir(path.parent, "its folder")
    except OSError as err:
        raise type(err)(err.errno, f"cannot write {what} ({describe_os_error(err)})", str(path)) from err
    return path


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path`` that ``remove_orphaned_temp_files`` recognises by its PID."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write ``path`` through a temporary file: on success it replaces ``path``, on any error it goes."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with naming(path):
            with open(tmp, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return Path(path)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (errors name the file)."""
    with naming(path):
        with open(path, "a") as handle:
            handle.write(text)


def remove_orphaned_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``temp_path``) in ``folder`` whose writer is dead; return them."""
    folder = Path(folder)
    removed = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not pid_alive(int(match.group(1))):
            try:
                path.unlink()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            removed.append(path)
    return removed


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: what went wrong and the path, e.g. ``permission denied: out/x``."""
    if err.errno == errno.ENOSPC:
        what = "no space left on device"
    elif err.strerror:
        what = err.strerror[0].lower() + err.strerror[1:]
    else:
        return str(err)
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what
