"""Task distributions and the one batch structure they share.

* ``OmniglotTasks``: N-way K-shot Omniglot tasks (vectorised, seeded, rotations as classes).
* ``SinusoidTasks``: sinusoid regression tasks of the MAML paper.
* ``TaskBatch``: ``support_x, support_y, query_x, query_y`` with a leading task dimension.
"""
from .batch import TaskBatch
from .omniglot import OmniglotTasks
from .sinusoid import SinusoidTasks

__all__ = ["OmniglotTasks", "SinusoidTasks", "TaskBatch"]
