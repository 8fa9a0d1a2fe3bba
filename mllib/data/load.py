"""``load_omniglot``: Omniglot as one ``uint8`` tensor, built once into a cache and then loaded.

>>> data = load_omniglot()                 # MLLIB_DATA, data/, or download=True
>>> data.images.shape                      # [characters, drawers, 28, 28], uint8
torch.Size([1623, 20, 28, 28])
>>> data.characters[0]
'Alphabet_of_the_Magi/character01'

Pixel values: 0 = background, 255 = stroke (grey in between at stroke edges after the
LANCZOS resize). ``images.float() / 255`` gives the MAML paper's inputs (strokes = 1).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mllib.files import check_output_dir, describe_os_error, remove_orphaned_temp_files

from . import build
from .locate import CACHE_ENV, OmniglotSource, default_cache_dir, locate_omniglot, user_cache_dir

FULL_CHARACTERS = 1623


@dataclass
class OmniglotData:
    """Preprocessed Omniglot.

    * ``images``: ``uint8 [C, D, 28, 28]`` (C = 1,623 characters, D = 20 drawers for the real set),
      0 = background, 255 = stroke.
    * ``characters``: ``C`` names ``"alphabet/characterNN"`` (background set first, each set sorted).
    * ``sets``: ``C`` entries, ``"background"`` or ``"evaluation"`` (Lake's split).
    * ``alphabets``: the distinct alphabet names, in character order.
    * ``alphabet_index``: ``long [C]``, the position of each character's alphabet in ``alphabets``.
    * ``source``: the folder the data came from; ``source_paths``: the zip or folder per set.
    * ``cache_path``: the cache file; ``cache_hit``: whether it existed already; ``seconds``: time taken.
    """

    images: torch.Tensor
    characters: list
    sets: list
    source: str = ""
    source_paths: dict = field(default_factory=dict)
    cache_path: str = ""
    cache_hit: bool = False
    fingerprint: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [characters, drawers, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.characters) != self.images.shape[0] or len(self.sets) != self.images.shape[0]:
            raise ValueError("characters and sets need one entry per character (images dim 0)")
        alphabets: list = []
        index = []
        for name in self.characters:
            alphabet = name.split("/")[0]
            if not alphabets or alphabets[-1] != alphabet:
                if alphabet in alphabets:
                    raise ValueError(f"characters of alphabet {alphabet} are not contiguous")
                alphabets.append(alphabet)
            index.append(len(alphabets) - 1)
        self.alphabets = alphabets
        self.alphabet_index = torch.tensor(index, dtype=torch.long)

    @property
    def num_characters(self) -> int:
        return self.images.shape[0]

    @property
    def complete(self) -> bool:
        """True for the full data set (1,623 characters); False for a subset such as the synthetic one."""
        return self.num_characters == FULL_CHARACTERS

    def __repr__(self) -> str:
        return (
            f"OmniglotData(images=uint8{list(self.images.shape)}, alphabets={len(self.alphabets)}, "
            f"source={self.source!r}, cache_path={self.cache_path!r})"
        )


def _read_cache(path: Path, fingerprint: str):
    """``(images, characters, sets)`` from a valid cache file, else ``None`` (then it is rebuilt)."""
    try:
        payload = torch.load(path, weights_only=True)
    except Exception:  # unreadable cache (e.g. a disk error): rebuild it
        return None
    if not isinstance(payload, dict):
        return None
    images, characters, sets = payload.get("images"), payload.get("characters"), payload.get("sets")
    if (
        payload.get("version") != build.PREPROCESS_VERSION
        or payload.get("fingerprint") != fingerprint
        or not isinstance(images, torch.Tensor)
        or images.dtype != torch.uint8
        or images.dim() != 4
        or tuple(images.shape[2:]) != (build.IMAGE_SIZE, build.IMAGE_SIZE)
        or not isinstance(characters, list)
        or not isinstance(sets, list)
        or len(characters) != images.shape[0]
        or len(sets) != images.shape[0]
    ):
        return None
    return images, characters, sets


def _writable_cache_folder(folder: Path, explicit: bool) -> Path:
    """``folder`` if a cache can be written there (checked before the images are decoded).

    A default folder that is not writable (a read-only checkout) gives way to the user cache folder,
    with a note on stderr; an explicit one (``cache_dir``, ``$MLLIB_CACHE``) raises ``OSError``.
    """
    try:
        return check_output_dir(folder, "the cache folder")
    except OSError as err:
        fallback = user_cache_dir()
        if explicit or folder == fallback:
            raise
        print(f"note: cannot write the Omniglot cache to {folder} ({describe_os_error(err)}); using "
              f"{fallback} instead (set {CACHE_ENV} to choose)", file=sys.stderr)
        return check_output_dir(fallback, "the user cache folder")


def load_omniglot(
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> OmniglotData:
    """Locate Omniglot (``root`` -> ``$MLLIB_DATA`` -> ``data/`` -> download when ``download``),
    build the 28x28 cache on first use (``cache_dir`` -> ``$MLLIB_CACHE`` -> ``<repo>/data/cache``,
    or the user cache folder when that default is not writable), and return it as :class:`OmniglotData`.
    The cache folder is checked before any image is decoded (``OSError`` naming it).

    ``workers``: processes that decode the PNGs during a build (default: 2 on Linux, else 1).
    Raises :class:`~mllib.data.OmniglotDataError` when the data is missing or corrupt.
    """
    start = time.perf_counter()
    source: OmniglotSource = locate_omniglot(root, download=download, progress=progress)
    fingerprint = build.source_fingerprint(source)
    cache_path = default_cache_dir(cache_dir) / build.cache_file_name(fingerprint)
    cached = _read_cache(cache_path, fingerprint) if cache_path.is_file() else None
    hit = cached is not None
    if cached is None:
        explicit = cache_dir is not None or bool(os.environ.get(CACHE_ENV))
        cache_path = _writable_cache_folder(cache_path.parent, explicit) / cache_path.name
        cached = _read_cache(cache_path, fingerprint) if cache_path.is_file() else None  # the fallback's copy
        hit = cached is not None
    if cached is None:
        remove_orphaned_temp_files(cache_path.parent)  # of builds that were killed
        listing = build.list_source(source)
        images = torch.from_numpy(build.decode_images(source, listing, workers=workers, progress=progress))
        payload = {
            "version": build.PREPROCESS_VERSION,
            "fingerprint": fingerprint,
            "characters": listing.characters,
            "sets": listing.sets,
            "images": images,
        }
        build.write_cache_atomic(cache_path, payload)
        cached = images, listing.characters, listing.sets
    images, characters, sets = cached
    return OmniglotData(
        images=images,
        characters=list(characters),
        sets=list(sets),
        source=str(source.root),
        source_paths={k: str(v) for k, v in source.paths.items()},
        cache_path=str(cache_path),
        cache_hit=hit,
        fingerprint=fingerprint,
        seconds=time.perf_counter() - start,
    )
