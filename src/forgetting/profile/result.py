"""What :func:`forgetting.profile.profile` returns: :class:`ProfileResult` and its per-sample table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from forgetting.profile.dynamics import SampleDynamics
from forgetting.profile.mislabel import MislabelFlags
from forgetting.profile.prune import PruneResult
from forgetting.records import TrainRecord

__all__ = ["ProfileResult"]


@dataclass
class ProfileResult:
    """What :func:`profile` found.

    Attributes:
        dynamics: the per-sample read-outs of the main run.
        labels: int64 ``[N]`` the training labels as given.
        class_names: the K class names.
        observe: ``"presentation"`` or ``"eval"``.
        train: the main run's training record.
        test_accuracy: eval-mode accuracy on the test set (``None`` without one).
        mislabel: the AUM flags (``None`` when turned off).
        pruning: one :class:`~forgetting.profile.prune.PruneResult` per fraction asked for.
        seconds: wall time per phase (``train``, ``mislabel``, ``prune``, ``write``, ``total``).
        files: what was written (``table``, ``parquet``, ``summary``, ``report``), when ``out_dir`` was given.
        model: the main run's trained model.
        label_flipped: bool ``[N]`` the rows whose labels were flipped on purpose (synthetic noise), when
            known: the table gets a ``label_flipped`` column and the summary the flags' precision and recall.
    """

    dynamics: SampleDynamics
    labels: np.ndarray
    class_names: tuple[str, ...]
    observe: str
    train: TrainRecord
    test_accuracy: float | None
    mislabel: MislabelFlags | None
    pruning: list[PruneResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    model: nn.Module | None = None
    label_flipped: np.ndarray | None = None

    @property
    def n(self) -> int:
        """The number of training samples profiled."""
        return int(self.labels.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The per-sample table, one array per column (the CSV's columns, in order)."""
        d = self.dynamics
        names = np.asarray(self.class_names, dtype=object)
        cols: dict[str, np.ndarray] = {
            "row": np.arange(self.n, dtype=np.int64),
            "label": self.labels.astype(np.int64),
            "label_name": names[self.labels],
            "predicted": d.predicted,
            "predicted_name": names[np.clip(d.predicted, 0, len(names) - 1)],
            "correct": d.correct,
            "forgetting": d.forgetting,
            "learning": d.learning,
            "switches": d.switches,
            "never_learned": d.never_learned,
            "unforgettable": d.unforgettable,
            "first_learned_epoch": d.first_learned_epoch,
            "learned_epoch": d.learned_epoch,
            "last_forgotten_epoch": d.last_forgotten_epoch,
            "observations": d.observations,
            "confidence": d.confidence,
            "variability": d.variability,
            "correctness": d.correctness,
            "aum": d.aum,
            "final_loss": d.final_loss,
        }
        if self.mislabel is not None:
            cols["aum_threshold_gap"] = self.mislabel.gap
            cols["likely_mislabeled"] = self.mislabel.flagged
        if self.label_flipped is not None:
            cols["label_flipped"] = self.label_flipped
        return cols
