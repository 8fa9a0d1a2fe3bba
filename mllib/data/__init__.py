"""Omniglot: located, preprocessed once into a cache, split by fixed manifests.

* ``load_omniglot(root=None, cache_dir=None, download=False) -> OmniglotData``
  (``images``: ``uint8 [1623, 20, 28, 28]``, 0 = background, 255 = stroke).
* ``split_characters(split, part, characters=None) -> list[int]`` for the ``lake``, ``maml`` and
  ``vinyals`` splits; ``check_split_complete(characters, split, parts)`` refuses a copy that lacks
  characters of them (``MLLIB_ALLOW_PARTIAL_DATA=1`` or ``allow=True``: a warning and a note).
* ``write_synthetic_omniglot(root, ...)``: a small Omniglot-shaped data set in the upstream zip
  layout, for tests.
"""
from .build import PREPROCESS_VERSION
from .locate import (
    CACHE_ENV,
    CUSTOM_ENV,
    DATA_ENV,
    CustomOmniglotWarning,
    OmniglotDataError,
    OmniglotSource,
    default_cache_dir,
    locate_omniglot,
    upstream_url,
    verify_zip,
)
from .load import OmniglotData, load_omniglot
from .splits import PARTIAL_ENV, SPLITS, canonical_characters, check_split_complete, split_characters, split_names
from .synthetic import write_synthetic_omniglot

__all__ = [
    "CACHE_ENV",
    "CUSTOM_ENV",
    "DATA_ENV",
    "CustomOmniglotWarning",
    "PREPROCESS_VERSION",
    "SPLITS",
    "OmniglotData",
    "OmniglotDataError",
    "OmniglotSource",
    "PARTIAL_ENV",
    "canonical_characters",
    "check_split_complete",
    "default_cache_dir",
    "load_omniglot",
    "locate_omniglot",
    "split_characters",
    "split_names",
    "upstream_url",
    "verify_zip",
    "write_synthetic_omniglot",
]
