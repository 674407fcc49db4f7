"""The static HTML report of ``forgetting augment``: the before/after table (mean ± std over seeds),
per-class accuracy and IoU, the selection per seed and example figures of original vs augmented sections
with the region mask outlined."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forgetting._html import CSS, new_figure, td
from forgetting._html import table as html_table
from forgetting.segmentation.augment_analysis import TABLE_COLUMNS

__all__ = ["plot_augmented_example", "write_augment_report"]


def plot_augmented_example(
    original_C_H_W: np.ndarray,
    augmented_C_H_W: np.ndarray,
    mask_H_W: np.ndarray,
    path: Path,
    *,
    title: str = "",
) -> Path:
    """One PNG: the original section, the augmented one and their difference, the mask outlined in cyan.

    Args:
        original_C_H_W, augmented_C_H_W: uint8 sections (the first channel is drawn).
        mask_H_W: float32 region mask in ``[0, 1]`` (outline at 0.5).
    """
    h, w = mask_H_W.shape
    panel_w = min(3.0, max(1.8, 6.0 * w / max(h, 1)))
    fig = new_figure(3 * panel_w + 0.6, panel_w * h / max(w, 1) + 0.8)
    axes = fig.subplots(1, 3)
    a = original_C_H_W[0].astype(np.float32)
    b = augmented_C_H_W[0].astype(np.float32)
    diff = b - a
    lim = max(1.0, float(np.abs(diff).max()))
    panels = (
        ("original", a, "gray", 0, 255),
        ("augmented", b, "gray", 0, 255),
        ("difference", diff, "RdBu", -lim, lim),
    )
    for ax, (name, data, cmap, lo, hi) in zip(axes, panels, strict=True):
        ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
        if mask_H_W.max() > 0:
            ax.contour(mask_H_W, levels=[0.5], colors="cyan", linewidths=0.7)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _cell(agg: Mapping[str, Any], digits: int) -> str:
    mean = agg["mean"]
    text = "n/a" if mean is None else f"{mean:.{digits}f} ± {agg['std']:.{digits}f}"
    return f'<td class="num">{html.escape(text)}</td>'


def write_augment_report(
    out_dir: Path,
    summary: Mapping[str, Any],
    *,
    table: str,
    classes: Sequence[str],
    examples: Mapping[str, Any],
    max_examples: int = 4,
    config_json: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report/index.html`` (and its PNGs) under ``out_dir``; returns the HTML path.

    Args:
        summary: the protocol's summary (``aggregate``, ``per_seed``, ``arms``, ``budget``, ...).
        table: the Markdown before/after table (shown verbatim too).
        classes: the class names.
        examples: ``{"seed", "augmented": AugmentedSections, "originals": uint8 [A, C, H, W]}`` or empty.
        max_examples: at most this many example figures (the copies with the largest masks).
    """
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    arms = list(summary["arms"])
    agg = summary["aggregate"]
    rows = [td(arm) + "".join(_cell(agg[arm][p], d) for p, _, d in TABLE_COLUMNS) for arm in arms]
    main = html_table(["arm", *(h for _, h, _ in TABLE_COLUMNS)], rows, "before-after")
    class_rows = []
    for c in classes:
        cells = td(c)
        for arm in arms:
            cells += _cell(agg[arm][f"test.class_accuracy.{c}"], 3) + _cell(agg[arm][f"test.iou.{c}"], 3)
        class_rows.append(cells)
    class_head = ["class"] + [f"{arm} {what}" for arm in arms for what in ("acc", "IoU")]
    per_class = html_table(class_head, class_rows, "per-class")
    sel_rows = [
        td(seed) + "".join(f'<td class="num">{rec["selection"][k]:g}</td>' for k in rec["selection"])
        for seed, rec in summary["per_seed"].items()
    ]
    first = next(iter(summary["per_seed"].values()))["selection"]
    selection = html_table(["seed", *first.keys()], sel_rows, "selection")
    figures = []
    aug = examples.get("augmented")
    if aug is not None and len(aug) and max_examples > 0:
        area = aug.masks.reshape(len(aug), -1).sum(dim=1)
        order: list[int] = []
        for i in area.argsort(descending=True).tolist():  # the largest masks, one copy per section
            if len(order) < max_examples and int(aug.source[i]) not in {int(aug.source[j]) for j in order}:
                order.append(i)
        for i in order:
            name = f"example-{i:03d}-section-{int(aug.source[i])}.png"
            plot_augmented_example(
                examples["originals"][i].numpy(),
                aug.images[i].numpy(),
                aug.masks[i].numpy(),
                report_dir / name,
                title=f"seed {examples['seed']}: section {int(aug.source[i])} styled after pool section "
                f"{int(aug.style[i])}",
            )
            figures.append(f'<img src="{name}" alt="{html.escape(name)}">')
    budget = summary["budget"]
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(str(summary["name"]))}</title>
<style>{CSS}</style></head><body>
<h1>forgetting-guided augmentation: {html.escape(str(summary["name"]))}</h1>
<p class="note">{html.escape(str(summary["dataset"]))}, model {html.escape(str(summary["model"]))}, seeds
{html.escape(str(summary["seeds"]))}. Every arm: exactly {budget["steps"]} optimizer steps of
{budget["batch_size"]} sections ({budget["epochs_of_original_set"]} epochs of the original training set), the
same initial weights and batch-order seed per seed; forgetting observed on the original train sections and
the test sections every {budget["observe_every_steps"]} steps.
Style: {html.escape(json.dumps(summary["style"]))}.
Mean ± sample std over seeds; FF = frequently forgotten regions (count, pixels).</p>
<h2>Before / after</h2>
{main}
<pre>{html.escape(table)}</pre>
<h2>Per-class accuracy and IoU (test)</h2>
{per_class}
<h2>Selection per seed</h2>
{selection}
<h2>Examples: original vs augmented (mask outlined)</h2>
{"".join(figures) or '<p class="note">no section was selected</p>'}
<h2>Config</h2>
<pre>{html.escape(json.dumps(config_json or {}, indent=2))}</pre>
</body></html>
"""
    path = report_dir / "index.html"
    path.write_text(body, encoding="utf-8")
    return path
