"""Write what annotators work from: a ranked CSV, a Label Studio import file, an HTML page, PNG files.

Segmentation projects get their own CSV (:func:`write_segmentation_csv`: the name of the mask file to return
per image) and page (:func:`write_segmentation_html`: each image with the model's prediction, its per-pixel
score map and switch map). Label Studio's formats (tasks, pre-annotations, labelling configurations, brush
masks) are in :mod:`forgetting.annotate.label_studio`.

Every file is written atomically (temporary file + rename) and depends only on its arguments, so the same
ranking gives byte-identical files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._csv import csv_text
from forgetting._io import atomic_write_bytes, atomic_write_text
from forgetting.annotate import label_studio
from forgetting.annotate.results import RankedItem

__all__ = [
    "CSV_COLUMNS",
    "SEGMENTATION_CSV_COLUMNS",
    "class_colors",
    "class_hex_colors",
    "colorize_classes",
    "colorize_scores",
    "label_studio_config",
    "label_studio_tasks",
    "png_bytes",
    "write_html",
    "write_json",
    "write_png",
    "write_ranked_csv",
    "write_segmentation_csv",
    "write_segmentation_html",
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


#: Columns of the ranked CSV of a segmentation project. ``mask_file`` is the name (relative to the folder of
#: returned masks) the image's mask should have, as ``.png`` (or the same name with ``.npy``).
SEGMENTATION_CSV_COLUMNS: tuple[str, ...] = ("rank", "item", "score", "strategy", "round", "mask_file")

_IGNORED_RGB = (187, 187, 187)  # grey: pixels outside the classes (the ignore index) and NaN scores


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

    Fill in the ``label`` column and import the file with ``forgetting label``. Text cells that a
    spreadsheet would run as a formula (an item or class named ``=...``, ``+...``, ``-...``, ``@...``) get a
    leading ``'`` (:func:`forgetting._csv.safe_cell`); the import removes it again.
    """
    rows = [
        [r.rank, r.item, _num(r.score), strategy, round_, r.predicted or "", _num(r.confidence), ""]
        for r in items
    ]
    return atomic_write_text(path, csv_text([CSV_COLUMNS, *rows]))


def label_studio_tasks(
    items: Sequence[RankedItem],
    image_urls: Sequence[str],
    *,
    strategy: str,
    round_: int,
    predictions: Sequence[dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio import tasks for ``items`` (see :func:`forgetting.annotate.label_studio.tasks`)."""
    return label_studio.tasks(items, image_urls, strategy=strategy, round_=round_, predictions=predictions)


def label_studio_config(classes: Sequence[str]) -> str:
    """A Label Studio labelling interface for single-choice image classification over ``classes``."""
    return label_studio.choices_config(classes)


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


# --------------------------------------------------------------------------------------------------------
# Segmentation


def write_segmentation_csv(
    path: str | Path,
    items: Sequence[RankedItem],
    mask_files: Sequence[str],
    *,
    strategy: str,
    round_: int,
) -> Path:
    """The ranked list of a segmentation round as CSV with :data:`SEGMENTATION_CSV_COLUMNS`.

    Return one mask per image, named as its ``mask_file`` inside a folder, and import the folder with
    ``forgetting label``. Text cells are neutralised as in :func:`write_ranked_csv`.
    """
    rows = [
        [r.rank, r.item, _num(r.score), strategy, round_, mask_file]
        for r, mask_file in zip(items, mask_files, strict=True)
    ]
    return atomic_write_text(path, csv_text([SEGMENTATION_CSV_COLUMNS, *rows]))


def class_colors(num_classes: int) -> np.ndarray:
    """uint8 ``[K, 3]`` distinct colours for class ids ``0..K-1`` (matplotlib's tab10, or tab20 above 10)."""
    from matplotlib import colormaps

    base = colormaps["tab10" if num_classes <= 10 else "tab20"]
    rgba = base(np.arange(max(num_classes, 1)) % base.N, bytes=True)
    return np.asarray(rgba[:, :3], dtype=np.uint8)


def class_hex_colors(num_classes: int) -> list[str]:
    """:func:`class_colors` as ``"#rrggbb"`` strings (Label Studio's label colours)."""
    return [
        "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))
        for rgb in class_colors(num_classes)[:num_classes]
    ]


def colorize_classes(mask_H_W: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 ``[3, H, W]``: each pixel in its class's :func:`class_colors`, grey outside ``0..K-1``."""
    mask = np.asarray(mask_H_W).astype(np.int64)
    lut = np.vstack([class_colors(num_classes), np.array(_IGNORED_RGB, dtype=np.uint8)])
    index = np.where((mask >= 0) & (mask < num_classes), mask, num_classes)
    return np.ascontiguousarray(lut[index].transpose(2, 0, 1))


def colorize_scores(values_H_W: np.ndarray, vmin: float, vmax: float, *, cmap: str = "viridis") -> np.ndarray:
    """uint8 ``[3, H, W]``: ``values`` mapped linearly from ``[vmin, vmax]`` onto ``cmap``; NaN grey."""
    from matplotlib import colormaps

    values = np.asarray(values_H_W, dtype=np.float64)
    scaled = (values - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(values)
    rgb = colormaps[cmap](np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0), bytes=True)[..., :3]
    rgb[~np.isfinite(values)] = _IGNORED_RGB
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


_SEG_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1, h2, h3 { font-weight: 600; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; overflow-wrap: anywhere; }
.panels { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: flex-start; }
figure { margin: 0; font-size: 0.8em; }
figure img { height: 180px; width: auto; max-width: 420px; object-fit: contain; image-rendering: pixelated;
  background: #f3f3f3; border: 1px solid #ccc; display: block; }
.legend span { display: inline-block; margin-right: 1em; font-size: 0.9em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; margin-right: 0.3em;
  border: 1px solid #999; }
.note { color: #555; font-size: 0.9em; }
"""

#: The per-pixel panels of :func:`write_segmentation_html`: key, caption, colour map.
_SEG_PANELS: tuple[tuple[str, str, str], ...] = (
    ("pred", "model prediction", "classes"),
    ("pixel_scores", "pixel score", "viridis"),
    ("switch_maps", "switches while training", "inferno"),
)


def _img(array_C_H_W: np.ndarray, alt: str) -> str:
    data = base64.b64encode(png_bytes(array_C_H_W)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}">'


def write_segmentation_html(
    path: str | Path,
    items: Sequence[RankedItem],
    images: Sequence[np.ndarray | torch.Tensor],
    maps: dict[str, np.ndarray],
    *,
    classes: Sequence[str],
    title: str,
    notes: Sequence[str] = (),
) -> Path:
    """A self-contained page: per ranked image, the image and (when given) the model's prediction, the
    per-pixel score map and the switch map, as embedded PNGs at the image's resolution.

    Args:
        items: the ranked items; ``images[i]`` (uint8 ``[C, H, W]``) is ``items[i]``'s image.
        maps: optional ``pred`` (uint8 ``[n, H, W]`` class ids), ``pixel_scores`` (float ``[n, H, W]``) and
            ``switch_maps`` (uint8 ``[n, H, W]``), aligned with ``items``. Scores and switches share one
            colour scale over the page, so the images compare directly.
        classes: the class names (the prediction's colours; the legend).
        title, notes: the heading and the paragraphs under it.
    """
    k = len(classes)
    panels = [(key, caption, cmap) for key, caption, cmap in _SEG_PANELS if key in maps]
    limits: dict[str, tuple[float, float]] = {}
    scales = []
    for key, caption, cmap in panels:
        if cmap == "classes":
            continue
        values = np.asarray(maps[key], dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        limits[key] = (lo, hi)
        scales.append(f"{caption}: {_num(lo) or '0'} (dark) to {_num(hi) or '0'} (bright), {cmap}")
    sections = []
    for i, (r, image) in enumerate(zip(items, images, strict=True)):
        image_np = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        figures = [f"<figure>{_img(image_np, r.item)}<figcaption>image</figcaption></figure>"]
        for key, caption, cmap in panels:
            if cmap == "classes":
                panel = colorize_classes(maps[key][i], k)
            else:
                panel = colorize_scores(maps[key][i], *limits[key], cmap=cmap)
            figures.append(
                f"<figure>{_img(panel, f'{caption}: {r.item}')}<figcaption>{caption}</figcaption></figure>"
            )
        head = f"#{r.rank} {html.escape(r.item)} &middot; score {html.escape(_num(r.score) or 'n/a')}"
        sections.append(f'<h3>{head}</h3>\n<div class="panels">{"".join(figures)}</div>')
    legend = ""
    if any(cmap == "classes" for _, _, cmap in panels):
        swatches = [
            f'<span><span class="swatch" style="background: rgb{tuple(int(v) for v in rgb)}"></span>'
            f"{c}: {html.escape(name)}</span>"
            for c, (name, rgb) in enumerate(zip(classes, class_colors(k), strict=False))
        ]
        legend = f'<p class="legend">{"".join(swatches)}</p>\n'
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>\n' for n in [*notes, *scales])
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_SEG_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{notes_html}{legend}" + "\n".join(sections) + "\n</body>\n</html>\n"
    )
    return atomic_write_text(path, page)
