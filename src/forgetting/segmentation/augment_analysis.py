"""What ``forgetting augment`` reports, computed from the per-seed records: pure functions, no rendering.

:func:`aggregate` turns each seed's arm records (``{"test": metrics, "regions": ...}``, as the protocol stores
them in ``summary.json``) into mean and standard deviation per table column and per-class metric;
:func:`format_table` writes the Markdown before/after table. The protocol and the HTML report import this
module; it imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["TABLE_COLUMNS", "aggregate", "format_table"]


#: The columns of the before/after table: (key path in a seed's arm record, header, digits).
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("test.mean_iou", "test mIoU", 3),
    ("test.pixel_accuracy", "test pixel acc", 3),
    ("test.mean_class_accuracy", "test class acc", 3),
    ("regions.train.count", "train FF regions", 1),
    ("regions.train.area", "train FF area", 0),
    ("regions.test.count", "test FF regions", 1),
    ("regions.test.area", "test FF area", 0),
)


def _get(record: Mapping[str, Any], path: str) -> float:
    value: Any = record
    for part in path.split("."):
        value = value[part]
    return math.nan if value is None else float(value)


def aggregate(per_seed: Mapping[str, Mapping[str, Any]], arms: Sequence[str], classes: Sequence[str]) -> dict:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds of every table column and per-class metric."""
    out: dict[str, Any] = {}
    seeds = list(per_seed)
    paths = [p for p, _, _ in TABLE_COLUMNS]
    paths += [f"test.class_accuracy.{c}" for c in classes] + [f"test.iou.{c}" for c in classes]
    for arm in arms:
        out[arm] = {}
        for path in paths:
            values = np.array([_get(per_seed[s][arm], path) for s in seeds], dtype=np.float64)
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
            std = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else 0.0
            out[arm][path] = {
                "mean": None if math.isnan(mean) else mean,
                "std": std,
                "values": [None if math.isnan(v) else v for v in values.tolist()],
            }
    return out


def format_table(aggregated: Mapping[str, Mapping[str, Any]], arms: Sequence[str], n_seeds: int) -> str:
    """The before/after table in Markdown: one row per arm, ``mean ± std`` over the seeds."""
    head = ["arm", *(h for _, h, _ in TABLE_COLUMNS)]
    lines = [
        f"before/after over {n_seeds} seed{'s' if n_seeds != 1 else ''} "
        "(mean ± std; FF = frequently forgotten)",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for arm in arms:
        cells = [arm]
        for path, _, digits in TABLE_COLUMNS:
            cell = aggregated[arm][path]
            mean = cell["mean"]
            cells.append("n/a" if mean is None else f"{mean:.{digits}f} ± {cell['std']:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
