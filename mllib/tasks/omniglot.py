"""Omniglot N-way K-shot tasks, sampled with tensor ops on the whole ``uint8`` image tensor.

A *class* is a character, or with ``rotations=True`` a pair (character, k) whose images are
rotated by ``k * 90`` degrees, k in 0..3 (so each character gives four classes, as in the MAML
paper). One task:

1. ``ways`` distinct classes of the split part, in random order (with
   ``one_rotation_per_character=True``: ``ways`` distinct characters, each at a random k);
2. a fresh random permutation of ``0..ways-1`` as their labels;
3. for each class, ``shots + query`` distinct drawers: the first ``shots`` go to the support set,
   the others to the query set (so no image is in both).

Everything is drawn from one explicit ``torch.Generator``, seeded from ``(seed, part)`` so the
train, val and test streams are separate and the same seed gives the same tasks.
``state_dict()`` / ``load_state_dict()`` save and restore that generator for an exact resume.

Output: a :class:`~mllib.tasks.TaskBatch` with float32 images in [0, 1] (strokes = 1):
``support_x [T, ways*shots, 1, 28, 28]``, ``support_y [T, ways*shots]`` (long),
``query_x [T, ways*query, 1, 28, 28]``, ``query_y [T, ways*query]``; examples are grouped by
class (``shots`` rows of one class, then the next class), each class carrying its permuted label.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch

from mllib.arguments import check_choice, check_int
from mllib.data.splits import PARTS, SPLITS, split_characters
from mllib.device import cpu_threads
from mllib.tasks.batch import TaskBatch


def stream_seed(seed: int, part: str) -> int:
    """A 63-bit generator seed for ``(seed, part)``: distinct, well-mixed streams per part.

    So no test task is ever drawn from the training stream (notebook 02, section 4).

        >>> stream_seed(0, "train") != stream_seed(0, "test") and stream_seed(0, "test") < 2 ** 63
        True
    """
    digest = hashlib.sha256(f"mllib-omniglot-tasks:{int(seed)}:{part}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _rotation_tables(height: int, width: int) -> torch.Tensor:
    """``long [4, H*W]``: for each k, the source pixel of every output pixel of ``rot90(img, k)``."""
    grid = torch.arange(height * width).view(height, width)
    return torch.stack([torch.rot90(grid, k, dims=(0, 1)).reshape(-1) for k in range(4)])


def _class_characters(data, split: str | None, part: str, characters: Sequence[int] | None) -> list[int]:
    """Sorted indices into ``data.images`` of the characters tasks are drawn from."""
    if characters is not None:
        chars = [int(c) for c in characters]
        if len(set(chars)) != len(chars) or any(not 0 <= c < data.images.shape[0] for c in chars):
            raise ValueError(f"characters must be distinct indices in 0..{data.images.shape[0] - 1}")
        return sorted(chars)
    if split is None:
        return list(range(data.images.shape[0]))
    check_choice("split", split, (*SPLITS, None))
    return split_characters(split, part, data.characters)


class OmniglotTasks:
    """N-way K-shot Omniglot tasks from one part of a split.

    ``data``: an :class:`~mllib.data.OmniglotData`. ``split``: ``"maml"``, ``"lake"``,
    ``"vinyals"``, or ``None`` for every character of ``data``. ``part``: ``"train"``, ``"val"``
    or ``"test"``. ``characters``: explicit character indices into ``data.images`` (overrides
    ``split``; ``part`` then only names the seed stream). ``rotations``: rotated copies as new
    classes; default ``True`` for ``part="train"``, ``False`` otherwise (the MAML and Prototypical
    Networks papers rotate test classes too: ``mllib.evaluate.EvalProtocol(test_rotations=True)``).
    ``one_rotation_per_character``: with rotations, draw ``ways`` distinct characters and then a
    rotation for each (as the MAML reference code does), so a task never holds two rotations of
    one character; default ``False``: ``ways`` distinct classes of the four-fold class set (as
    Prototypical Networks describe it). ``device``: where the image tensor lives and batches are
    built (indices are always drawn on the CPU generator). ``threads``: torch CPU threads while a
    batch is sampled (default 1: the ops are small, and a second thread on a busy shared CPU made
    sampling 10x slower here); ``None`` keeps torch's setting.
    Notebook 02, sections 5-7.

        >>> from mllib.data import OmniglotData
        >>> names = [f"alphabet/character{i:02d}" for i in range(10)]
        >>> data = OmniglotData(torch.zeros(10, 20, 28, 28, dtype=torch.uint8), names, ["background"] * 10)
        >>> batch = OmniglotTasks(data, split=None, part="test", ways=5, shots=1, query=3).sample(2)
        >>> tuple(batch.support_x.shape), tuple(batch.query_y.shape)
        ((2, 5, 1, 28, 28), (2, 15))
    """

    def __init__(
        self,
        data,
        split: str | None = "maml",
        part: str = "train",
        ways: int = 5,
        shots: int = 1,
        query: int = 15,
        rotations: bool | None = None,
        seed: int = 0,
        characters: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        threads: int | None = 1,
        one_rotation_per_character: bool = False,
    ) -> None:
        check_choice("part", part, PARTS)
        drawers = data.images.shape[1]
        check_int("ways", ways, 2)
        check_int("shots", shots, 1)
        check_int("query", query, 1)
        if shots + query > drawers:
            raise ValueError(
                f"shots + query must be <= {drawers} (each Omniglot character has {drawers} drawers), "
                f"got shots={shots} + query={query} = {shots + query}"
            )
        chars = _class_characters(data, split, part, characters)
        split = None if characters is not None else split
        if rotations is None:
            rotations = part == "train"
        self.rotations_per_class = 4 if rotations else 1
        if not isinstance(one_rotation_per_character, bool) or (one_rotation_per_character and not rotations):
            raise ValueError(f"one_rotation_per_character must be True (with rotations=True) or False, got "
                             f"{one_rotation_per_character!r} with rotations={rotations!r}")
        if one_rotation_per_character and ways > len(chars):
            raise ValueError(f"ways must be in 2..{len(chars)} (the characters of split={split!r} part={part!r}: "
                             f"one_rotation_per_character draws distinct characters), got {ways}")
        self.one_rotation_per_character = bool(one_rotation_per_character)
        num_classes = len(chars) * self.rotations_per_class
        if ways > num_classes:
            raise ValueError(
                f"ways must be in 2..{num_classes} (the classes of split={split!r} part={part!r} with "
                f"rotations={bool(rotations)}: {len(chars)} characters x {self.rotations_per_class}), got {ways}"
            )
        self.data = data
        self.split, self.part, self.ways, self.shots, self.query = split, part, ways, shots, query
        self.rotations, self.seed = bool(rotations), int(seed)
        self.characters = torch.tensor(chars, dtype=torch.long)
        self.num_classes = num_classes
        self.device = torch.device(device) if device is not None else data.images.device
        images = data.images.to(self.device)
        self._height, self._width = images.shape[-2:]
        self._drawers = drawers
        self._rows = images.reshape(-1, self._height * self._width)  # [C*D, H*W] uint8, a view
        self._rot = _rotation_tables(self._height, self._width).to(self.device)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
        self.threads = threads
        self.generator = torch.Generator().manual_seed(stream_seed(self.seed, part))
        self.tasks_sampled = 0

    def __repr__(self) -> str:
        return (
            f"OmniglotTasks(split={self.split!r}, part={self.part!r}, ways={self.ways}, shots={self.shots}, "
            f"query={self.query}, rotations={self.rotations}, classes={self.num_classes}, seed={self.seed}"
            + (", one_rotation_per_character=True" if self.one_rotation_per_character else "") + ")"
        )

    # ------------------------------------------------------------------ sampling

    def sample_indices(self, num_tasks: int) -> dict:
        """The random choices behind ``num_tasks`` tasks (CPU tensors).

        * ``classes``: ``[T, ways]`` class ids in ``0..num_classes-1`` (class = character position
          in ``self.characters`` * rotations_per_class + k);
        * ``characters``: ``[T, ways]`` indices into ``data.images``; ``rotation``: ``[T, ways]`` k;
        * ``labels``: ``[T, ways]`` the label of each class (a permutation of ``0..ways-1`` per task);
        * ``drawers``: ``[T, ways, shots+query]`` distinct drawers, support first.
        """
        check_int("num_tasks", num_tasks, 1)
        g = self.generator
        if self.one_rotation_per_character:  # distinct characters, then a rotation k for each
            chars = torch.rand(num_tasks, len(self.characters), generator=g).topk(self.ways, dim=1).indices
            classes = chars * self.rotations_per_class + torch.randint(0, 4, (num_tasks, self.ways), generator=g)
        else:
            classes = torch.rand(num_tasks, self.num_classes, generator=g).topk(self.ways, dim=1).indices
        labels = torch.rand(num_tasks, self.ways, generator=g).argsort(dim=1)
        drawers = torch.rand(num_tasks, self.ways, self._drawers, generator=g).argsort(dim=2)
        drawers = drawers[:, :, : self.shots + self.query]
        self.tasks_sampled += num_tasks
        return {
            "classes": classes,
            "characters": self.characters[classes // self.rotations_per_class],
            "rotation": classes % self.rotations_per_class,
            "labels": labels,
            "drawers": drawers,
        }

    def batch_from_indices(self, idx: dict) -> TaskBatch:
        """Build the :class:`TaskBatch` of the choices ``idx`` (from :meth:`sample_indices`)."""
        dev = self.device
        rows = (idx["characters"][:, :, None] * self._drawers + idx["drawers"]).to(dev)  # [T, W, S+Q]
        labels = idx["labels"].to(dev)
        t, w, n = rows.shape
        hw = self._height * self._width
        # one row gather for support and query (index_select is much faster than advanced indexing)
        pixels = self._rows.index_select(0, rows.reshape(-1)).view(t, w, n, hw)  # uint8
        if self.rotations:
            index = self._rot[idx["rotation"].to(dev)][:, :, None, :].expand(t, w, n, hw)
            pixels = pixels.gather(3, index)
        s, q = self.shots, self.query
        support_x = pixels[:, :, :s].float().div_(255).view(t, w * s, 1, self._height, self._width)
        query_x = pixels[:, :, s:].float().div_(255).view(t, w * q, 1, self._height, self._width)
        return TaskBatch(
            support_x=support_x,
            support_y=labels.repeat_interleave(s, dim=1),
            query_x=query_x,
            query_y=labels.repeat_interleave(q, dim=1),
        )

    def sample(self, num_tasks: int) -> TaskBatch:
        """``num_tasks`` new tasks (see the module docstring for shapes)."""
        with cpu_threads(self.threads):  # indices are drawn on the CPU either way
            return self.batch_from_indices(self.sample_indices(num_tasks))

    # ------------------------------------------------------------------ resume

    def _config(self) -> dict:
        return {
            "split": self.split, "part": self.part, "ways": self.ways, "shots": self.shots,
            "query": self.query, "rotations": self.rotations, "seed": self.seed,
            "num_classes": self.num_classes,
        } | ({"one_rotation_per_character": True} if self.one_rotation_per_character else {})

    def state_dict(self) -> dict:
        """The generator state and the sampler's settings (to resume the same stream exactly)."""
        return {"generator": self.generator.get_state(), "tasks_sampled": self.tasks_sampled, "config": self._config()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the settings must match this sampler's."""
        if state.get("config") != self._config():
            raise ValueError(f"state_dict is for a sampler with config {state.get('config')}, this one has {self._config()}")
        self.generator.set_state(state["generator"])
        self.tasks_sampled = int(state.get("tasks_sampled", 0))
