"""What a query returns: the ranked items of one round, and where their files were written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["QueryResult", "RankedItem"]


@dataclass(frozen=True)
class RankedItem:
    """One image to label next.

    Attributes:
        rank: 1-based position in the strategy's selection order (1 = picked first).
        item: the item id (a path relative to the image folder, or an array row index).
        score: the strategy's score of the item (switch count for ``gauss``/``switch``, entropy, distance
            ...); NaN when the strategy has none (``random``).
        predicted: the class the round's model predicts, or ``None`` when no model was trained.
        confidence: that prediction's softmax probability (NaN without a model).
    """

    rank: int
    item: str
    score: float
    predicted: str | None = None
    confidence: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "item": self.item,
            "score": None if math.isnan(self.score) else self.score,
            "predicted": self.predicted,
            "confidence": None if math.isnan(self.confidence) else self.confidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RankedItem:
        def num(value: Any) -> float:
            return math.nan if value is None else float(value)

        return cls(
            int(data["rank"]),
            str(data["item"]),
            num(data["score"]),
            data["predicted"],
            num(data["confidence"]),
        )


@dataclass(frozen=True)
class QueryResult:
    """The outcome of :meth:`forgetting.annotate.LabelingProject.query`.

    Attributes:
        round: the round number k; its files are in ``<project>/rounds/<k>/``.
        strategy: the strategy that ranked the items.
        seed: the query seed.
        items: the ranked items, best first.
        n_labeled: labelled images the round's model was trained on.
        n_pool: unlabelled images the strategy chose from.
        directory: ``<project>/rounds/<k>``.
        reused: ``True`` when an identical query of this round was already on disk and was returned as is.
        info: training and timing details (epochs, training accuracy, seconds per phase, labels digest).
        task: the project's task, ``classification`` or ``segmentation``.
    """

    round: int
    strategy: str
    seed: int
    items: list[RankedItem]
    n_labeled: int
    n_pool: int
    directory: Path
    reused: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"

    @property
    def item_ids(self) -> list[str]:
        """The item ids in rank order."""
        return [r.item for r in self.items]

    @property
    def csv_path(self) -> Path:
        """The ranked CSV (``rank,item,score,strategy,round,predicted,confidence,label``; segmentation:
        ``rank,item,score,strategy,round,mask_file``)."""
        return self.directory / "query.csv"

    @property
    def label_studio_path(self) -> Path:
        """The Label Studio import file (a JSON list of tasks; not written for segmentation projects)."""
        return self.directory / "label_studio.json"

    @property
    def maps_path(self) -> Path:
        """Segmentation: ``maps.npz`` with ``items``, ``pred`` (uint8 ``[n, H, W]``), ``pixel_scores``
        (float16; probability strategies) and ``switch_maps`` (uint8; when the pool was tracked) of the
        queried images (no file when the strategy ranks without a model)."""
        return self.directory / "maps.npz"

    @property
    def html_path(self) -> Path:
        """The page that shows the ranked images."""
        return self.directory / "index.html"
