"""The task interface: what an active-learning round needs from a kind of data.

The loop (:func:`forgetting.loop.run_active_learning`), the labelling projects (:mod:`forgetting.annotate`)
and the reports talk to a :class:`Task` only; they never branch on the kind of data. Two tasks are built in:
:class:`~forgetting.tasks.classification.ClassificationTask` (one class per sample) and
:class:`~forgetting.segmentation.task.SegmentationTask` (one class per pixel), which lives in the
segmentation package and depends on this interface, never the reverse. A new kind of data implements this
class and registers it with :func:`~forgetting.tasks.registry.register_task`.

A round, in the task's words:

1. :meth:`Task.initial_set` draws the seeded initial labelled rows;
2. :meth:`Task.labeled_set` wraps the labelled rows with the loss settings a training function needs
   (class weights, ignore index); the pool is observed per *element* (a sample, or a pixel) into an
   :class:`~forgetting.events.EventTracker` while the model trains;
3. :meth:`Task.evaluate` gives the metrics of each evaluation set;
4. :meth:`Task.pool_inputs` predicts the pool (probabilities, MC samples, embeddings, counts, per element)
   and reduces element scores to one score per sample: the :class:`~forgetting.strategies.StrategyInputs` the
   strategy selects from;
5. :meth:`Task.query_arrays` and :meth:`Task.dynamics` say which arrays the round stores.

Strategies declare what they can score (``requires``, ``selection``, ``elementwise``); :meth:`Task.support`
matches that with what the task produces and names what is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from forgetting._tensors import class_counts
from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.initial import uniform_initial_set
from forgetting.strategies import MODEL_INPUTS, Input, Strategy, StrategyInputs, list_strategies
from forgetting.training import LabeledSet

__all__ = ["PoolContext", "PoolInputs", "Task"]


@dataclass
class PoolContext:
    """Everything a task may read to compute a strategy's inputs after a round has trained.

    Attributes:
        pool: the query candidates (rows of the training data), in pool order.
        labeled: the labelled rows (for embeddings of the labelled set).
        pool_indices: int64 ``[P]`` dataset (training-split) index of each candidate.
        tracker: the pool's :class:`~forgetting.events.EventTracker` when it was observed while training.
        pool_targets: the candidates' true targets (oracle strategies in simulations), or ``None``.
        batch_size: inference batch size (``None``: the task's default for the device).
        mc_samples: MC-dropout passes for strategies that need them.
        mc_seed: seed of the MC-dropout masks.
        embedding_layer: the model layer whose output is the embedding (``None``: ``embed``/``features``).
    """

    pool: DataSource
    labeled: DataSource
    pool_indices: np.ndarray
    tracker: EventTracker | None = None
    pool_targets: torch.Tensor | None = None
    batch_size: int | None = None
    mc_samples: int = 20
    mc_seed: int = 0
    embedding_layer: str | None = None


@dataclass
class PoolInputs:
    """What :meth:`Task.pool_inputs` computed.

    Attributes:
        inputs: the strategy's inputs, aligned with the pool.
        form: how the task applied the strategy (a task-specific name, e.g. ``"pixel-probs"``).
        extras: task-specific per-pool tensors the round stores (e.g. reduced pixel switch counts).
    """

    inputs: StrategyInputs
    form: str
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Task(ABC):
    """One kind of data: how a round trains on it, scores it, evaluates it and stores it.

    Args:
        num_classes: K.
        class_names: names of the K classes (per-class metrics and labelling tools); default ``"0"``...

    Attributes:
        name: the registry name (``"classification"``, ``"segmentation"``).
        headline_metric: the metric that logs and the report's learning curves lead with.
        element: what one tracked element is (``"sample"`` or ``"pixel"``).
        divergence_metric: an evaluation metric that is NaN or infinite exactly when the model's outputs
            are (classification: ``nll``), or ``None``.
    """

    name: ClassVar[str]
    headline_metric: ClassVar[str]
    element: ClassVar[str] = "sample"
    #: a metric that is non-finite only when the model's outputs are (the loop then reports divergence)
    divergence_metric: ClassVar[str | None] = None

    def __init__(self, num_classes: int, *, class_names: Sequence[str] | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = int(num_classes)
        names = [str(c) for c in range(num_classes)] if class_names is None else [str(c) for c in class_names]
        if len(names) != self.num_classes:
            raise ConfigError(f"{len(names)} class names for {self.num_classes} classes")
        self.class_names = tuple(names)

    # ------------------------------------------------------------------ strategies
    @abstractmethod
    def support(self, strategy: Strategy) -> str | None:
        """How this task applies ``strategy`` (a form name), or ``None`` when it cannot."""

    def check_strategy(self, strategy: Strategy) -> str:
        """The form of ``strategy`` on this task.

        Raises:
            ConfigError: the task cannot run it; the message names what the strategy needs and lists the
                strategies that work.
        """
        form = self.support(strategy)
        if form is None:
            requires = ", ".join(sorted(strategy.requires)) or "nothing"
            raise ConfigError(
                f"strategy {strategy.name!r} has no {self.name} form (it needs {requires}, selection "
                f"{strategy.selection!s}); {self.name} experiments support: "
                f"{', '.join(self.supported_strategies())}"
            )
        return form

    def supported_strategies(self) -> list[str]:
        """The registered strategies (with default options) this task runs."""
        return list_strategies(where=lambda strategy: self.support(strategy) is not None)

    @staticmethod
    def needs_model(strategy: Strategy) -> bool:
        """Whether ``strategy`` reads the round's trained model (any model output, or tracked dynamics)."""
        requires = frozenset(strategy.requires)
        return bool(requires & (MODEL_INPUTS | {Input.DYNAMICS, Input.POOL_LABELS}))

    # ------------------------------------------------------------------ data
    def initial_set(self, train: DataSource, size: int, *, selection: str, seed: int) -> np.ndarray:
        """The seeded initial labelled rows: sorted int64 ``[size]``. The default draws uniformly."""
        return uniform_initial_set(len(train), size, seed=seed)

    def labeled_set(self, data: DataSource, *, seed: int, device: torch.device) -> LabeledSet:
        """The labelled rows as a training function receives them (no class weights by default)."""
        return LabeledSet(data, self.num_classes, seed, device)

    def batch_size(
        self, device: torch.device, input_shape: tuple[int, ...], configured: int | None
    ) -> int | None:
        """The inference batch size of the round's passes: ``configured``, else ``None``: each pass then
        takes :func:`~forgetting.inference.default_batch_size` of the device, the input shape and the
        round's model."""
        return configured

    def label_warnings(self, targets: torch.Tensor) -> list[str]:
        """Warnings about labelled targets (int64 ``[L]`` or ``[L, H, W]``) a model cannot learn from: the
        classes no labelled element shows (the ignore index excluded)."""
        counts = class_counts(targets, self.num_classes, ignore_index=self.observe_ignore_index)
        absent = [self.class_names[c] for c in torch.nonzero(counts == 0).flatten().tolist()]
        if not absent:
            return []
        what = "pixel" if self.element == "pixel" else "image"
        return [
            f"no labelled {what} shows class(es) {', '.join(absent)}; the model cannot predict them until "
            "the labels contain them"
        ]

    @property
    def observe_ignore_index(self) -> int | None:
        """The target value that counts no event when the pool is observed with targets."""
        return None

    # ------------------------------------------------------------------ after training
    @abstractmethod
    def evaluate(self, model: nn.Module, data: DataSource, *, batch_size: int | None) -> dict[str, float]:
        """The metrics of ``model`` on one evaluation set (eval mode)."""

    @abstractmethod
    def pool_inputs(self, model: nn.Module | None, strategy: Strategy, ctx: PoolContext) -> PoolInputs:
        """Compute exactly what ``strategy`` declared, for every candidate of ``ctx.pool``."""

    @abstractmethod
    def query_arrays(
        self,
        model: nn.Module | None,
        strategy: Strategy,
        ctx: PoolContext,
        positions: np.ndarray,
        computed: PoolInputs,
    ) -> dict[str, np.ndarray]:
        """Arrays about the picked candidates (``positions`` int64 ``[n]`` into the pool), aligned with
        them, that the round stores and a labelling tool shows."""

    @abstractmethod
    def dynamics(self, tracker: EventTracker, computed: PoolInputs | None, *, labels: bool) -> dict:
        """Per-candidate dynamics arrays the round stores (``switches``, ``observations``...); ``labels``:
        the pool was tracked with its true labels (oracle counts available)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"
