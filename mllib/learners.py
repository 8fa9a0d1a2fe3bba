"""Which network each algorithm meta-trains on Omniglot: ``build_learner(algo, ways, filters, depth)``.

* the MAML family and ProtoNets (``mllib.algorithms.ALGORITHMS``): the course's conv learner,
  ``mllib.models.build_conv_learner`` (notebook 05);
* ``incontext``: the in-context set transformer of ``mllib.incontext`` (notebook 07), whose encoder
  is the same ``depth`` conv blocks of ``filters`` channels, followed by ``INCONTEXT_SHAPE``
  (token width, transformer blocks, attention heads).

``mllib.train`` builds the learner of a run with it, and ``mllib.evaluate`` rebuilds it from a
checkpoint's config, so both always agree.
"""
from __future__ import annotations

from torch import nn

from mllib.algorithms import INCONTEXT, check_algorithm_settings
from mllib.incontext import omniglot_incontext
from mllib.models import build_conv_learner

# The transformer part of the Omniglot in-context learner trained by `mllib train --algo incontext`
# (changing it makes earlier checkpoints unloadable: their parameter shapes would differ).
INCONTEXT_SHAPE = dict(dim=64, depth=2, heads=4)


def build_learner(algo: str, ways: int, filters: int, depth: int = 4) -> nn.Module:
    """The freshly initialised Omniglot learner that ``algo`` meta-trains (``ways`` classes).

    ``filters`` channels in each of ``depth`` conv blocks (the conv learner, or the in-context
    learner's encoder). Images are ``[N, 1, 28, 28]``.

        >>> type(build_learner("maml", 5, filters=4)).__name__, type(build_learner("incontext", 5, 4)).__name__
        ('ConvLearner', 'InContextLearner')
    """
    if check_algorithm_settings(algo) == INCONTEXT:
        return omniglot_incontext(ways, filters=filters, conv_depth=depth, **INCONTEXT_SHAPE)
    return build_conv_learner(ways, filters, depth)
