"""Omniglot: located, preprocessed once into a cache, split by fixed manifests.

* ``load_omniglot(root=None, cache_dir=None, download=False) -> OmniglotData``
  (``images``: ``uint8 [1623, 20, 28, 28]``, 0 = background, 255 = stroke).
* ``split_characters(split, part, characters=None) -> list[int]`` for the ``lake``, ``maml`` and
  ``vinyals`` splits.
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
from .splits import SPLITS, canonical_characters, split_characters, split_names
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
    "canonical_characters",
    "default_cache_dir",
    "load_omniglot",
    "locate_omniglot",
    "split_characters",
    "split_names",
    "upstream_url",
    "verify_zip",
    "write_synthetic_omniglot",
]
