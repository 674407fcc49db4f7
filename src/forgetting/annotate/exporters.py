"""Write what annotators work from: a ranked CSV, a Label Studio import file, an HTML page, PNG files.

Every file is written atomically (temporary file + rename) and depends only on its arguments, so the same
ranking gives byte-identical files.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import torch

from forgetting._io import atomic_write_bytes, atomic_write_text
from forgetting.annotate.importers import LABEL_STUDIO_FROM_NAME
from forgetting.annotate.results import RankedItem

__all__ = [
    "CSV_COLUMNS",
    "label_studio_config",
    "label_studio_tasks",
    "png_bytes",
    "write_html",
    "write_json",
    "write_png",
    "write_ranked_csv",
]

#: Columns of the ranked CSV. ``label`` is left empty for the annotator to fill in.
CSV_COLUMNS: tuple[str, ...] = (
    "rank",
    "item",
    "score",
    "strategy",
    "round",
    "predicted",
    "confidence",
    "label",
)


def _as_hwc(image_C_H_W: np.ndarray | torch.Tensor) -> np.ndarray:
    array = image_C_H_W.cpu().numpy() if isinstance(image_C_H_W, torch.Tensor) else np.asarray(image_C_H_W)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"expected a uint8 [C, H, W] image with C in 1, 3, 4; got {array.dtype} {array.shape}"
        )
    hwc = np.ascontiguousarray(array.transpose(1, 2, 0))
    return hwc[..., 0] if hwc.shape[2] == 1 else hwc


def png_bytes(image_C_H_W: np.ndarray | torch.Tensor) -> bytes:
    """Encode a ``uint8 [C, H, W]`` image (C = 1, 3 or 4) as PNG (Pillow; matplotlib without it)."""
    hwc = _as_hwc(image_C_H_W)
    buffer = io.BytesIO()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is installed with matplotlib
        import matplotlib.image as mpimg

        mpimg.imsave(buffer, hwc, cmap="gray", vmin=0, vmax=255, format="png")
        return buffer.getvalue()
    Image.fromarray(hwc).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | Path, image_C_H_W: np.ndarray | torch.Tensor) -> Path:
    """Write a ``uint8 [C, H, W]`` image as a PNG file, atomically. Returns the path."""
    return atomic_write_bytes(path, png_bytes(image_C_H_W))


def _num(value: float) -> str:
    return "" if math.isnan(value) else format(value, ".6g")


def write_ranked_csv(path: str | Path, items: Sequence[RankedItem], *, strategy: str, round_: int) -> Path:
    """The ranked list as CSV with :data:`CSV_COLUMNS`; empty cells where a value is missing.

    Fill in the ``label`` column and import the file with ``forgetting label``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in items:
        writer.writerow(
            [r.rank, r.item, _num(r.score), strategy, round_, r.predicted or "", _num(r.confidence), ""]
        )
    return atomic_write_text(path, buffer.getvalue())


def label_studio_tasks(
    items: Sequence[RankedItem], image_urls: Sequence[str], *, strategy: str, round_: int
) -> list[dict[str, Any]]:
    """Label Studio import tasks for ``items``: ``data.image`` (the URL annotators see), ``data.item`` (the
    item id, which the export keeps so labels map back exactly) and ``meta`` (rank, score, strategy, round,
    model prediction)."""
    tasks = []
    for r, url in zip(items, image_urls, strict=True):
        meta: dict[str, Any] = {"rank": r.rank, "score": None if math.isnan(r.score) else r.score}
        meta.update({"strategy": strategy, "round": round_})
        if r.predicted is not None:
            meta["predicted"] = r.predicted
            meta["confidence"] = None if math.isnan(r.confidence) else r.confidence
        tasks.append({"data": {"image": url, "item": r.item}, "meta": meta})
    return tasks


def label_studio_config(classes: Sequence[str]) -> str:
    """A Label Studio labelling interface for single-choice image classification over ``classes``."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        f'  <Choices name="{LABEL_STUDIO_FROM_NAME}" toName="image" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON (keys in insertion order), atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2 { font-weight: 600; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; padding: 0.4em; border: 1px solid #ccc; width: 140px; font-size: 0.8em; }
figure img { width: 128px; height: 128px; object-fit: contain; image-rendering: pixelated;
  background: #f3f3f3; display: block; }
figcaption { margin-top: 0.3em; overflow-wrap: anywhere; }
.rank { font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
"""


def write_html(
    path: str | Path,
    items: Sequence[RankedItem],
    images: Sequence[np.ndarray | torch.Tensor],
    *,
    title: str,
    notes: Sequence[str] = (),
) -> Path:
    """A self-contained page (thumbnails embedded as base64 PNG) showing each item's rank, id, score and
    the model's prediction. ``images[i]`` is ``uint8 [C, H, W]`` of ``items[i]``."""
    cards = []
    for r, image in zip(items, images, strict=True):
        data = base64.b64encode(png_bytes(image)).decode("ascii")
        lines = [f'<span class="rank">#{r.rank}</span> score {html.escape(_num(r.score) or "n/a")}']
        lines.append(html.escape(r.item))
        if r.predicted is not None:
            lines.append(f"model: {html.escape(r.predicted)} ({html.escape(_num(r.confidence))})")
        cards.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(r.item, quote=True)}">'
            f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>"
        )
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>\n' for n in notes)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{note_html}"
        f'<div class="grid">\n' + "\n".join(cards) + "\n</div>\n</body>\n</html>\n"
    )
    return atomic_write_text(path, page)
