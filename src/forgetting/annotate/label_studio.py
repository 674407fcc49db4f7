"""Label Studio's formats, both ways: labelling configurations, import tasks with the model's pre-annotations,
and annotation results (single choices, brush masks) read back into labels and masks.

Everything here is plain data (JSON-ready dicts, numpy arrays); files and the project's rules live in
:mod:`~forgetting.annotate.exporters`, :mod:`~forgetting.annotate.importers` and
:mod:`~forgetting.annotate.labels`.

Results use the control ``label`` (:data:`FROM_NAME`) on the image ``image`` (:data:`TO_NAME`):

* classification: ``{"type": "choices", "value": {"choices": [class name]}}``;
* segmentation: one ``{"type": "brushlabels", "value": {"format": "rle", "rle": [...], "brushlabels":
  [class name]}, "original_width": W, "original_height": H}`` per class, the RLE of Label Studio's brush
  layer (:mod:`~forgetting.annotate.rle`).

Predictions carry a ``score``: the round's ranking as a number, :func:`rank_score` (1 for the image the
strategy picked first, falling linearly to ``1/n`` for the n-th), so that sorting Label Studio's tasks by
"Prediction score" (descending) reproduces the strategy's order. It is the rank and not the strategy's raw
score because several strategies do not pick by descending score (GauSS picks from a fitted range of switch
counts, ``sampled-switch`` and ``random`` sample); the raw scores are in the round's ``query.csv``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from forgetting.annotate import rle
from forgetting.annotate.results import RankedItem
from forgetting.exceptions import LabelImportError

__all__ = [
    "BRUSH_TYPES",
    "FROM_NAME",
    "TO_NAME",
    "brush_config",
    "brush_mask",
    "brush_results",
    "choice_result",
    "choices_config",
    "prediction",
    "rank_score",
    "tasks",
]

logger = logging.getLogger(__name__)

#: The control that holds the label: ``from_name`` of every result we write and, by default, read.
FROM_NAME = "label"
#: The image the results refer to (``to_name``); the task's ``data.image`` holds its URL.
TO_NAME = "image"
#: Result types that hold brush masks.
BRUSH_TYPES: frozenset[str] = frozenset({"brushlabels", "brush"})


def choices_config(classes: Sequence[str]) -> str:
    """A labelling interface for single-choice image classification over ``classes``."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def brush_config(classes: Sequence[str], colors: Sequence[str]) -> str:
    """A labelling interface for painting masks: a brush label per class, in class-id order, each in its
    colour (``"#rrggbb"``, the colours of the project's pages)."""
    labels = "\n".join(
        f"    <Label value={quoteattr(c)} background={quoteattr(color)}/>"
        for c, color in zip(classes, colors, strict=True)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        "  </BrushLabels>\n"
        "</View>\n"
    )


def choice_result(class_name: str) -> dict[str, Any]:
    """The result that chooses ``class_name``."""
    return {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [class_name]}}


def brush_results(mask_H_W: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One brush result per class present in ``mask`` (values outside ``0..K-1``, e.g. the ignore index,
    are left unpainted).

    Args:
        mask_H_W: integer ``[H, W]`` class ids.
        classes: the K class names (``classes[k]`` is class id ``k``).
    """
    mask = np.asarray(mask_H_W)
    if mask.ndim != 2:
        raise ValueError(f"a mask is [H, W], got shape {list(mask.shape)}")
    height, width = (int(v) for v in mask.shape)
    present = np.unique(mask[(mask >= 0) & (mask < len(classes))]).tolist()
    return [
        {
            "id": f"class-{k}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": rle.encode_mask(mask == k), "brushlabels": [classes[k]]},
        }
        for k in (int(v) for v in present)
    ]


def brush_mask(
    results: Sequence[Any],
    class_ids: Mapping[str, int],
    *,
    ignore_index: int | None,
    where: str,
    from_name: str | None = None,
) -> np.ndarray | None:
    """The mask an annotation's brush results paint, or ``None`` when it has none.

    Each result paints the pixels of its region (alpha not zero) with the id of its one brush label. Where
    regions overlap, the later result wins (Label Studio draws later regions on top). Pixels no region
    paints get ``ignore_index``.

    Args:
        results: the annotation's ``result`` list (results of other types are ignored).
        class_ids: class name -> class id.
        ignore_index: the value of unpainted pixels; ``None`` (every value is a class) requires every pixel
            to be painted.
        where: the annotation's place, for messages.
        from_name: read only the results of this control (default: every brush control).

    Returns:
        int64 ``[H, W]`` class ids, or ``None``.

    Raises:
        LabelImportError: a result without exactly one known class, an RLE that does not decode to its
            stated size, regions of different sizes, or unpainted pixels without an ignore index.
    """
    brushes = [
        r
        for r in results
        if isinstance(r, dict)
        and str(r.get("type", "")).lower() in BRUSH_TYPES
        and (from_name is None or r.get("from_name") == from_name)
    ]
    if not brushes:
        return None
    mask: np.ndarray | None = None
    painted: np.ndarray | None = None
    overlap = 0
    for k, result in enumerate(brushes):
        name = f"{where} result {result.get('id', k)}"
        value = result.get("value")
        if not isinstance(value, dict) or "rle" not in value:
            raise LabelImportError(f"{name}: a brush result needs value.rle (Label Studio's brush RLE)")
        if value.get("format", "rle") != "rle":
            raise LabelImportError(f"{name}: brush format {value.get('format')!r} is not 'rle'")
        labels = value.get("brushlabels") or []
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
            raise LabelImportError(
                f"{name}: a brush region needs exactly one class, got brushlabels {labels!r}; give every "
                "region one label in Label Studio"
            )
        label = labels[0].strip()
        if label not in class_ids:
            raise LabelImportError(
                f"{name}: brush label {label!r} is not among the project's classes {list(class_ids)}; the "
                "labelling interface must use the project's class names (label_studio_config.xml)"
            )
        if (result.get("image_rotation") or 0) != 0:
            raise LabelImportError(f"{name}: the image was rotated in Label Studio; annotate it unrotated")
        try:
            height, width = int(result["original_height"]), int(result["original_width"])
        except (KeyError, TypeError, ValueError):
            raise LabelImportError(f"{name}: needs original_height and original_width") from None
        region = rle.decode_alpha(value["rle"], height, width) if value["rle"] else None
        if region is None:
            continue
        if mask is None or painted is None:
            mask = np.full((height, width), -1, dtype=np.int64)
            painted = np.zeros((height, width), dtype=bool)
        elif mask.shape != (height, width):
            raise LabelImportError(
                f"{name}: a {height}x{width} region among regions of "
                f"{mask.shape[0]}x{mask.shape[1]} in one annotation"
            )
        overlap += int(np.count_nonzero(region & painted))
        mask[region] = class_ids[label]
        painted |= region
    if mask is None or painted is None:
        return None
    if overlap:
        logger.info(
            "%s: %d pixel(s) painted by several brush regions; the later region's class is kept",
            where,
            overlap,
        )
    unpainted = int(np.count_nonzero(~painted))
    if unpainted:
        if ignore_index is None:
            raise LabelImportError(
                f"{where}: {unpainted} pixel(s) are not painted, and the project has no ignore index "
                '(ignore_index = "none": every pixel needs a class); paint them, or set an ignore index in '
                "[segmentation] of forgetting.toml"
            )
        mask[~painted] = ignore_index
    return mask


def rank_score(rank: int, n_ranked: int) -> float:
    """The prediction score of the image ranked ``rank`` (1-based) of ``n_ranked``: ``(n - rank + 1) / n``,
    1.0 for the strategy's first pick. Sorting by it (descending) reproduces the strategy's order."""
    return (n_ranked - rank + 1) / n_ranked


def prediction(result: list[dict[str, Any]], *, score: float | None, model_version: str) -> dict[str, Any]:
    """A Label Studio prediction (a pre-annotation) with its ``score`` and ``model_version``."""
    return {
        "model_version": model_version,
        "score": None if score is None or math.isnan(score) else float(score),
        "result": result,
    }


def tasks(
    items: Sequence[RankedItem],
    image_urls: Sequence[str],
    *,
    strategy: str,
    round_: int,
    predictions: Sequence[dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio import tasks for ``items``: ``data.image`` (the URL annotators see), ``data.item`` (the
    item id, which the export keeps so labels map back exactly), ``meta`` (rank, score, strategy, round,
    model prediction) and, when given, one prediction (pre-annotation) each."""
    out = []
    for k, (r, url) in enumerate(zip(items, image_urls, strict=True)):
        meta: dict[str, Any] = {"rank": r.rank, "score": None if math.isnan(r.score) else r.score}
        meta.update({"strategy": strategy, "round": round_})
        if r.predicted is not None:
            meta["predicted"] = r.predicted
            meta["confidence"] = None if math.isnan(r.confidence) else r.confidence
        task: dict[str, Any] = {"data": {"image": url, "item": r.item}, "meta": meta}
        if predictions is not None and predictions[k] is not None:
            task["predictions"] = [predictions[k]]
        out.append(task)
    return out
