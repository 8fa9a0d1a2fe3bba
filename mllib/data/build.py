"""Read the Omniglot PNGs (zip or folder), preprocess them and write the cache file.

Preprocessing (``PREPROCESS_VERSION`` changes whenever this changes): each 105x105 1-bit PNG
is converted to 8-bit grey (``convert("L")``), resized to 28x28 with LANCZOS, and inverted so
that strokes are bright: stored ``uint8`` with 0 = background and 255 = full stroke (LANCZOS
leaves grey values in between at stroke edges).

Order, independent of the file system and of the order inside the zips: characters are the
``background`` set, then the ``evaluation`` set, each sorted by ``"alphabet/characterNN"``;
the drawers of a character are sorted by the drawer number in ``<id>_<drawer>.png``.

The cache file name carries ``PREPROCESS_VERSION`` and a fingerprint of the source: the
SHA-256 of the name, size and modification time of each zip, or of every PNG of an extracted
folder (so loading a cached set costs two ``stat`` calls, not a read of the zip directories). Writing goes to a temporary file in the cache folder, then
``os.replace`` renames it, so an interrupted or concurrent build never leaves a broken cache.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mllib.files import atomic_write
from mllib.progress import progress_bar

from .locate import SETS, OmniglotDataError, OmniglotSource

PREPROCESS_VERSION = 1
IMAGE_SIZE = 28
_CHUNK = 1024  # images per worker job


@dataclass(frozen=True)
class Listing:
    """Sorted description of a source: ``characters[i]`` has images ``members[i]`` (drawer order)."""

    characters: list  # "alphabet/characterNN", canonical order
    sets: list  # "background" | "evaluation" per character
    members: list  # per character, per drawer: (set_name, member name or relative path)


def _parse(rel: str):
    """``alphabet/character/<id>_<drawer>.png`` -> (alphabet, character, drawer) or None."""
    parts = rel.split("/")
    if len(parts) != 3 or not parts[2].endswith(".png") or parts[2].startswith("."):
        return None
    stem = parts[2][:-4]
    try:
        drawer = int(stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None
    return parts[0], parts[1], drawer


def _list_set(source: OmniglotSource, set_name: str) -> list:
    """[(rel, member, key)] of the files of one set (``key``: size and mtime, folders only)."""
    path = source.paths[set_name]
    prefix = f"images_{set_name}/"
    rows = []
    if source.kind(set_name) == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise OmniglotDataError(_corrupt(path, err)) from err
        for info in infos:
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            rel = info.filename[len(prefix):]
            rows.append((rel, info.filename, ""))
    else:
        for dirpath, _dirnames, filenames in os.walk(path):
            for name in filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                st = os.stat(full)
                rows.append((rel, full, f"{st.st_size}:{st.st_mtime_ns}"))
    return rows


def _corrupt(path, err) -> str:
    return (
        f"Omniglot source {path} is corrupt or truncated ({type(err).__name__}: {err}). "
        f"Replace it with an intact copy (or delete it and run with --download); no cache was written."
    )


def source_fingerprint(source: OmniglotSource) -> str:
    """SHA-256 of each set's zip (name, size, mtime) or of its folder's PNGs (path, size, mtime)."""
    digest = hashlib.sha256(b"omniglot-source-v1\n")
    for set_name in SETS:
        path = source.paths[set_name]
        if source.kind(set_name) == "zip":
            st = os.stat(path)
            digest.update(f"{set_name}:zip:{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        else:
            for rel, _member, key in sorted(_list_set(source, set_name)):
                digest.update(f"{set_name}:{rel}={key}\n".encode())
    return digest.hexdigest()


def list_source(source: OmniglotSource) -> Listing:
    """Sorted listing of ``source`` (reads only the zip directories / the folder tree)."""
    characters, sets, members = [], [], []
    drawer_counts = set()
    for set_name in SETS:
        per_char: dict = {}
        rows = _list_set(source, set_name)
        for rel, member, key in rows:
            parsed = _parse(rel)
            if parsed is None:
                continue
            alphabet, character, drawer = parsed
            per_char.setdefault(f"{alphabet}/{character}", []).append((drawer, member))
        if not per_char:
            raise OmniglotDataError(
                f"{source.paths[set_name]} holds no images_{set_name}/<alphabet>/<character>/<id>_<drawer>.png files; "
                f"is it the Omniglot images_{set_name} set?"
            )
        for name in sorted(per_char):
            images = sorted(per_char[name])
            drawers = [d for d, *_ in images]
            if len(set(drawers)) != len(drawers):
                raise OmniglotDataError(f"{source.paths[set_name]}: character {name} has duplicate drawer numbers")
            drawer_counts.add(len(images))
            characters.append(name)
            sets.append(set_name)
            members.append([(set_name, member) for _, member in images])
    if len(drawer_counts) != 1:
        raise OmniglotDataError(
            f"every Omniglot character must have the same number of drawers, found counts {sorted(drawer_counts)} "
            f"in {source.root} (an incomplete extraction?)"
        )
    if len(set(characters)) != len(characters):
        raise OmniglotDataError(f"{source.root}: the same alphabet appears in both sets")
    return Listing(characters, sets, members)


def cache_file_name(fingerprint: str) -> str:
    return f"omniglot-{IMAGE_SIZE}px-v{PREPROCESS_VERSION}-{fingerprint[:16]}.pt"


# --------------------------------------------------------------------------- decoding


MAX_SOURCE_PIXELS = 1024 * 1024  # Omniglot's PNGs are 105x105; anything this large is refused unread


class _TooLarge(ValueError):
    """A source image above ``MAX_SOURCE_PIXELS`` (a decompression bomb, or not Omniglot)."""


def _decode_png(data: bytes) -> np.ndarray:
    """One PNG -> ``uint8 [28, 28]``; :class:`_TooLarge` for an image above ``MAX_SOURCE_PIXELS``
    (its header is read, its pixels never are)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below anyway
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:  # above twice PIL's own limit: refused in open()
        raise _TooLarge(f"an image above PIL's decompression-bomb limit ({err})") from None
    with img:
        width, height = img.size
        if width * height > MAX_SOURCE_PIXELS:
            raise _TooLarge(f"a {width}x{height} image")
        small = img.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


def _too_large(where: str, err: _TooLarge) -> str:
    return (
        f"Omniglot source {where} is {err}, refused as a possible decompression bomb (Omniglot's images "
        f"are 105x105; at most {MAX_SOURCE_PIXELS:,} pixels are decoded). Replace the source with an intact "
        f"copy; no cache was written."
    )


def _decode_job(job) -> np.ndarray:
    """Worker: decode the PNGs of ``job = (paths, [(set_name, member), ...])`` -> ``uint8 [n, 28, 28]``."""
    paths, items = job
    out = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    zips: dict = {}
    try:
        for i, (set_name, member) in enumerate(items):
            path = paths[set_name]
            where = f"{path}:{member}" if path.endswith(".zip") else member
            try:
                if path.endswith(".zip"):
                    if set_name not in zips:
                        zips[set_name] = zipfile.ZipFile(path)
                    data = zips[set_name].read(member)
                else:
                    with open(member, "rb") as fh:
                        data = fh.read()
                out[i] = _decode_png(data)
            except _TooLarge as err:
                raise OmniglotDataError(_too_large(where, err)) from None
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, SyntaxError, MemoryError) as err:
                raise OmniglotDataError(_corrupt(where, err)) from None
    finally:
        for zf in zips.values():
            zf.close()
    return out


def _worker_signals() -> None:
    """In a decode worker: SIGTERM kills it (the default), Ctrl-C is left to the parent.

    A worker is forked from a command that turns SIGTERM into an exception
    (``mllib.signals.terminate_as_interrupt``); inherited, that handler made a worker told to stop
    print a traceback, or survive holding a lock of the pool's queues, and the build hung."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_pool(workers: int):
    """A fork ``ProcessPoolExecutor`` of ``workers`` decode processes with their own signal handling
    (:func:`_worker_signals`); a worker that dies (killed, out of memory) breaks the pool instead of
    leaving the build waiting for its result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork from a threaded process (3.12+)
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_signals)


def default_workers() -> int:
    """Worker processes for the build: up to 2 on Linux (fork), else 1 (decode in this process)."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def decode_images(source: OmniglotSource, listing: Listing, workers: int | None = None, progress: bool = True) -> np.ndarray:
    """All images of ``listing`` as ``uint8 [characters, drawers, 28, 28]`` (strokes 255, background 0)."""
    from PIL import PngImagePlugin  # noqa: F401  (imported before forking)

    n_chars, n_drawers = len(listing.characters), len(listing.members[0])
    flat = [m for per_char in listing.members for m in per_char]
    paths = {s: str(source.paths[s]) for s in SETS}
    jobs = [(paths, flat[i : i + _CHUNK]) for i in range(0, len(flat), _CHUNK)]
    workers = default_workers() if workers is None else max(1, int(workers))
    if len(jobs) < 2:
        workers = 1
    bar = progress_bar(total=len(flat), desc="Omniglot -> 28x28 cache", unit="img", enabled=progress, leave=False)
    parts = []
    try:
        if workers == 1:
            for job in jobs:
                parts.append(_decode_job(job))
                bar.update(len(job[1]))
        else:
            from concurrent.futures.process import BrokenProcessPool

            pool = decode_pool(workers)
            try:
                for part in pool.map(_decode_job, jobs):
                    parts.append(part)
                    bar.update(len(part))
            except BrokenProcessPool:
                raise OmniglotDataError(
                    f"a process decoding the Omniglot PNGs died (killed, or out of memory) while building the "
                    f"cache from {source.root}; no cache was written. Run again with --workers 1 to see which "
                    f"file it was") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    images = np.concatenate(parts)
    return images.reshape(n_chars, n_drawers, IMAGE_SIZE, IMAGE_SIZE)


# --------------------------------------------------------------------------- cache file


def write_cache_atomic(path: Path, payload: dict) -> None:
    """``torch.save(payload)`` to a temporary file beside ``path``, then ``os.replace`` it into place
    (``mllib.files.atomic_write``: the temporary file of a killed build is removed by the next load)."""
    import torch

    with atomic_write(path) as fh:
        torch.save(payload, fh)
