"""The forgetting-maps report: per-section map PNGs, analysis plots and one static HTML page.

Everything goes to ``<out_dir>/report/``: ``index.html`` (no scripts, no external resources, readable
offline) and the PNGs it shows. :func:`plot_section_maps` draws one section's maps and can be used alone.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._html import CSS, new_figure, slug, table, td
from forgetting._io import atomic_write_text
from forgetting.segmentation.maps_analysis import MapsAnalysis
from forgetting.segmentation.metrics import SegmentationMetrics
from forgetting.segmentation.regions import TEMPORAL_GROUPS, within_class_rho

__all__ = ["MapsReport", "boundary_segments", "pick_sections", "plot_section_maps", "write_maps_report"]

logger = logging.getLogger(__name__)

_BOUNDARY_RGBA = (0.0, 1.0, 1.0, 0.9)  # cyan label boundaries


@dataclass
class MapsReport:
    """The files of a maps report.

    Attributes:
        index: ``report/index.html``.
        map_pngs: per-section map figures (train sections first).
        figures: every other PNG.
    """

    index: Path
    map_pngs: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def pick_sections(analysis: MapsAnalysis, sections: int | Sequence[int]) -> list[int]:
    """Section indices to draw.

    An int ``k`` picks ``k`` sections spread over the ranking by frequently forgotten pixels: the most
    forgotten first, then evenly spaced ranks down to the least forgotten. A list is used as given (indices
    out of range are dropped with a warning).
    """
    n = analysis.forgetting.shape[0]
    if not isinstance(sections, int):
        chosen = [int(s) for s in sections if 0 <= int(s) < n]
        if len(chosen) != len(sections):
            logger.warning("maps.sections: dropped indices outside 0..%d", n - 1)
        return chosen
    k = min(int(sections), n)
    if k <= 0:
        return []
    per_section = analysis.frequent.reshape(n, -1).sum(axis=1)
    ranking = np.argsort(-per_section, kind="stable")
    ranks = np.unique(np.rint(np.linspace(0, n - 1, k)).astype(int))
    return [int(ranking[r]) for r in ranks]


def boundary_segments(mask_H_W: np.ndarray, ignore_H_W: np.ndarray | None = None) -> np.ndarray:
    """float64 ``[S, 2, 2]``: line segments along the pixel edges between two different (non-ignored) labels.

    In image coordinates (pixel ``(i, j)`` is centred at ``x = j, y = i``), ready for a matplotlib
    ``LineCollection`` over ``imshow``; drawing edges rather than boundary pixels keeps every map value
    visible.
    """
    ignore = np.zeros(mask_H_W.shape, dtype=bool) if ignore_H_W is None else ignore_H_W
    # vertical edges between columns j and j + 1
    dh = (mask_H_W[:, 1:] != mask_H_W[:, :-1]) & ~(ignore[:, 1:] | ignore[:, :-1])
    i, j = np.nonzero(dh)
    vertical = np.stack([np.stack([j + 0.5, i - 0.5], -1), np.stack([j + 0.5, i + 0.5], -1)], axis=1)
    # horizontal edges between rows i and i + 1
    dv = (mask_H_W[1:, :] != mask_H_W[:-1, :]) & ~(ignore[1:, :] | ignore[:-1, :])
    i, j = np.nonzero(dv)
    horizontal = np.stack([np.stack([j - 0.5, i + 0.5], -1), np.stack([j + 0.5, i + 0.5], -1)], axis=1)
    return np.concatenate([vertical, horizontal]).astype(np.float64)


def plot_section_maps(
    analysis: MapsAnalysis,
    index: int,
    path: str | Path,
    *,
    image_C_H_W: torch.Tensor | np.ndarray | None = None,
    title: str = "",
) -> Path:
    """One PNG with a section's seismic (or image), forgetting count, switch count and learned epoch.

    Label boundaries (pixels whose right or lower neighbour has another class) are drawn in cyan on every
    panel; ignored pixels are grey. Wide sections stack the panels vertically, tall ones side by side.

    Args:
        analysis: the maps (see :func:`~forgetting.segmentation.maps.analyze_forgetting`).
        index: the section.
        path: the PNG to write.
        image_C_H_W: the section's image (uint8 ``[C, H, W]``), drawn in the first panel; without it the
            true labels are drawn there.
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    path = Path(path)
    mask = analysis.masks[index]
    valid = analysis.valid[index]
    h, w = mask.shape
    segments = boundary_segments(mask, ~valid)
    wide = w >= 1.5 * h
    rows, cols = (4, 1) if wide else (1, 4)
    panel_w = 9.0 if wide else min(3.2, max(2.2, 9.0 * w / max(h, 1)))
    panel_h = panel_w * h / max(w, 1)
    width, height = panel_w * cols + 0.8 * cols, (panel_h + 0.6) * rows + 0.5
    # a fixed layout: constrained layout costs seconds per figure with four colorbars
    fig = new_figure(width, height, constrained=False)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.subplots_adjust(
        left=0.5 / width,
        right=1 - 0.4 / width,
        bottom=0.3 / height,
        top=1 - 0.75 / height,
        wspace=0.3,
        hspace=0.6 / (panel_h + 0.6),
    )
    cmap_labels = colormaps["tab10"]
    panels: list[tuple[str, np.ndarray, Any, tuple[float, float] | None]] = []
    if image_C_H_W is not None:
        img = image_C_H_W.cpu().numpy() if isinstance(image_C_H_W, torch.Tensor) else np.asarray(image_C_H_W)
        base = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        panels.append(("image and label boundaries", base, "gray", None))
    else:
        panels.append(("labels", np.ma.masked_where(~valid, mask), cmap_labels, (0, 9)))
    fmax = max(1, int(analysis.forgetting[index][valid].max(initial=0)))
    smax = max(1, int(analysis.switches[index][valid].max(initial=0)))
    forgetting = np.ma.masked_where(~valid, analysis.forgetting[index])
    panels.append(("forgetting events", forgetting, "inferno", (0, fmax)))
    panels.append(("switches", np.ma.masked_where(~valid, analysis.switches[index]), "inferno", (0, smax)))
    learned = analysis.learned_epoch[index]
    panels.append(
        (
            "learned for good at epoch (grey: wrong at the end)",
            np.ma.masked_where(~valid | (learned < 0), learned),
            "viridis",
            (1, max(1, analysis.epochs)),
        )
    )
    for ax, (name, data, cmap, limits) in zip(axes, panels, strict=True):
        cm = (colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(bad="#bbbbbb")
        kwargs: dict[str, Any] = {"cmap": cm, "interpolation": "nearest", "aspect": "auto"}
        if limits is not None:
            kwargs.update(vmin=limits[0], vmax=limits[1])
        im = ax.imshow(data, **kwargs)
        ax.add_collection(LineCollection(segments, colors=[_BOUNDARY_RGBA], linewidths=0.7))
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        if name != "image and label boundaries":
            fig.colorbar(im, ax=ax, fraction=0.08 if wide else 0.12, pad=0.02).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _binned_stats(x: np.ndarray, y: np.ndarray, max_points: int, seed: int) -> tuple[np.ndarray, ...]:
    """Per distinct x (integer counts): the median and quartiles of y, on a seeded subsample."""
    keep = np.flatnonzero(np.isfinite(y))
    if keep.size > max_points:
        keep = np.random.default_rng(seed).choice(keep, size=max_points, replace=False)
    xs, ys = x[keep], y[keep]
    values = np.unique(xs)
    med, q1, q3, counts = (np.zeros(values.size) for _ in range(4))
    for i, v in enumerate(values):  # one pass per distinct count value (tens at most)
        sel = ys[xs == v]
        q1[i], med[i], q3[i] = np.percentile(sel, [25, 50, 75])
        counts[i] = sel.size
    return values, med, q1, q3, counts


def _plot_relation(
    analysis: MapsAnalysis, y_map: np.ndarray, ylabel: str, rho: float, path: Path, seed: int
) -> None:
    fig = new_figure(5.2, 3.6)
    ax = fig.subplots()
    valid = analysis.valid
    x = analysis.forgetting[valid].astype(np.int64)
    y = y_map[valid].astype(np.float64)
    values, med, q1, q3, counts = _binned_stats(x, y, 200_000, seed)
    ax.fill_between(values, q1, q3, alpha=0.25, color="#3a7", linewidth=0, label="interquartile range")
    ax.plot(values, med, marker="o", color="#185", label="median")
    for v, m, c in zip(values, med, counts, strict=True):
        ax.annotate(f"{int(c)}", (v, m), fontsize=6, xytext=(2, 4), textcoords="offset points")
    ax.set_xlabel("forgetting events per pixel")
    ax.set_ylabel(ylabel)
    rho_text = "undefined" if math.isnan(rho) else f"{rho:+.3f}"
    ax.set_title(f"{ylabel} vs forgetting (Spearman rho {rho_text}); numbers: pixels", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path)


def _plot_per_class(
    analysis: MapsAnalysis, metrics: SegmentationMetrics | None, path: Path, split: str
) -> None:
    fig = new_figure(7.0, 3.4)
    ax = fig.subplots()
    k = analysis.num_classes
    x = np.arange(k)
    width = 0.27
    bars = [
        ("forgotten at least once", analysis.per_class["fraction_forgotten"]),
        (f"frequently forgotten (>= {analysis.tau})", analysis.per_class["fraction_frequent"]),
    ]
    if metrics is not None:
        bars.append(("test error (1 - class accuracy)", 1.0 - metrics.class_accuracy))
    for i, (label, values) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, np.nan_to_num(values), width, label=label)
    ax.set_xticks(x, analysis.class_names, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("share of the class's pixels")
    ax.set_title(f"per-class forgetting ({split} sections) and test error", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)


def _plot_temporal(analysis: MapsAnalysis, path: Path) -> None:
    fig = new_figure(7.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    t = analysis.temporal
    epochs = np.arange(t.last_forgotten_hist.size)
    ax1.bar(epochs, t.last_forgotten_hist, color="#c64")
    ax1.axvline(t.early_until + 0.5, color="k", linestyle="--", linewidth=1)
    ax1.set_xlabel("epoch of the last forgetting event")
    ax1.set_ylabel("pixels")
    ax1.set_title(f"early: <= epoch {t.early_until}", fontsize=8)
    ax2.bar(epochs, t.learned_hist, color="#48a")
    ax2.set_xlabel("epoch learned for good")
    ax2.set_title("pixels correct from this epoch on", fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.savefig(path)


def _plot_region_areas(analysis: MapsAnalysis, path: Path) -> None:
    fig = new_figure(5.0, 3.2)
    ax = fig.subplots()
    area = analysis.regions.area
    if area.size:
        bins = np.unique(np.rint(np.logspace(0, math.log10(max(area.max(), 1)) + 0.01, 25)).astype(int))
        ax.hist(area, bins=np.append(bins, bins[-1] + 1), color="#a5c")
        ax.set_xscale("log")
    ax.set_xlabel("region area (pixels)")
    ax.set_ylabel("regions")
    ax.set_title(
        f"{analysis.regions.count} frequently forgotten regions (forgetting >= {analysis.tau})", fontsize=8
    )
    ax.grid(alpha=0.3)
    fig.savefig(path)


def _plot_confusion(metrics: SegmentationMetrics, names: Sequence[str], path: Path) -> None:
    fig = new_figure(4.6, 4.0)
    ax = fig.subplots()
    c = metrics.confusion.astype(np.float64)
    rows = c.sum(axis=1, keepdims=True)
    norm = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(k), names, rotation=30, fontsize=6, ha="right")
    ax.set_yticks(range(k), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix (row-normalised)", fontsize=8)
    fig.savefig(path)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    return f"{float(x):.{digits}f}"


def _num(x: Any, digits: int = 3) -> str:
    return f'<td class="num">{_fmt(x, digits)}</td>'


def _metrics_section(metrics: Mapping[str, SegmentationMetrics], names: Sequence[str]) -> str:
    order = [s for s in ("test", "train") if s in metrics]
    parts = ["<h2>Segmentation metrics</h2>"]
    rows = [
        td(split) + _num(m.pixel_accuracy) + _num(m.mean_class_accuracy) + _num(m.mean_iou) + _num(m.fw_iou)
        for split, m in ((s, metrics[s]) for s in order)
    ]
    parts.append(table(["sections", "pixel accuracy", "mean class accuracy", "mIoU", "FWIoU"], rows, "m"))
    rows = []
    for i, name in enumerate(names):
        cells = td(name)
        for s in order:
            m = metrics[s]
            cells += _num(m.class_accuracy[i]) + _num(m.iou[i]) + _num(int(m.pixels[i]))
        rows.append(cells)
    headers = ["class"] + [f"{s} {h}" for s in order for h in ("accuracy", "IoU", "pixels")]
    parts.append(table(headers, rows, "per-class"))
    parts.append(
        '<p class="note">Class accuracy: correct pixels / pixels of the class. IoU: intersection over union. '
        "Means are over classes present; FWIoU weights each class's IoU by its pixel share. Ignored pixels "
        "are left out.</p>"
    )
    return "\n".join(parts)


def _analysis_section(
    split: str,
    analysis: MapsAnalysis,
    metrics: SegmentationMetrics | None,
    report_dir: Path,
    figures: list[Path],
    seed: int,
) -> str:
    s = analysis.summary()
    reg = analysis.regions.summary()
    parts = [f"<h2>Forgetting on the {html.escape(split)} sections</h2>"]
    parts.append(
        f"<p>{s['sections']} sections, {s['valid_pixels']:,} valid pixels observed after each of "
        f"{analysis.epochs} epochs. Forgotten at least once: {_fmt(s['fraction_forgotten'])}; frequently "
        f"forgotten (at least {analysis.tau} events): {_fmt(s['fraction_frequent'])}; never learned: "
        f"{_fmt(s['fraction_never_learned'])}. Mean forgetting events per pixel "
        f"{_fmt(s['mean_forgetting'])}, mean switches {_fmt(s['mean_switches'])}.</p>"
    )
    parts.append("<h3>Frequently forgotten regions</h3>")
    parts.append(
        f"<p><strong>{reg['count']:,} regions</strong> covering "
        f"<strong>{reg['total_area']:,} pixels</strong> "
        f"(mean area {_fmt(reg['mean_area'], 1)}, median {_fmt(reg['median_area'], 1)}, largest "
        f"{_fmt(reg['max_area'])}). A region is a connected component (within one section) of the pixels "
        f"forgotten at least {analysis.tau} times.</p>"
    )
    fname = f"regions-{slug(split)}.png"
    _plot_region_areas(analysis, report_dir / fname)
    figures.append(report_dir / fname)
    parts.append(f'<img src="{fname}" alt="region areas {html.escape(split)}">')
    pc = analysis.per_class
    rows = []
    for i, name in enumerate(analysis.class_names):
        rows.append(
            td(name)
            + _num(int(pc["pixels"][i]))
            + _num(pc["mean_forgetting"][i])
            + _num(pc["fraction_forgotten"][i])
            + _num(pc["fraction_frequent"][i])
            + _num(pc["fraction_never_learned"][i])
            + _num(int(pc["regions"][i]))
            + _num(int(pc["region_area"][i]))
        )
    parts.append("<h3>Per-class forgetting</h3>")
    parts.append(
        table(
            [
                "class",
                "pixels",
                "mean forgetting",
                "forgotten ≥ 1",
                f"forgotten ≥ {analysis.tau}",
                "never learned",
                "regions",
                "region area",
            ],
            rows,
            "per-class-forgetting",
        )
    )
    parts.append('<p class="note">Regions and their area are attributed to the majority true class.</p>')
    fname = f"per-class-{slug(split)}.png"
    _plot_per_class(analysis, metrics, report_dir / fname, split)
    figures.append(report_dir / fname)
    parts.append(f'<img src="{fname}" alt="per-class forgetting {html.escape(split)}">')

    parts.append("<h3>Decision-boundary evidence</h3>")
    rows = []
    quantities = (
        ("final softmax margin (top-1 − top-2)", "margin", analysis.margin, "margin"),
        ("distance to the nearest label boundary", "boundary distance", analysis.distance, "distance"),
    )
    by_class = {
        "margin": analysis.margin_correlation_by_class,
        "distance": analysis.distance_correlation_by_class,
    }
    pooled = {"margin": analysis.margin_correlation, "distance": analysis.distance_correlation}
    for label, ylabel, y_map, stem in quantities:
        corr = pooled[stem]
        if corr is None or y_map is None:
            continue
        within = within_class_rho(by_class[stem]) if by_class[stem] else math.nan
        rows.append(td(label) + _num(corr.rho) + td(f"{corr.p_value:.2g}") + _num(within) + _num(corr.n))
        fname = f"{stem}-{slug(split)}.png"
        _plot_relation(analysis, y_map, ylabel, corr.rho, report_dir / fname, seed)
        figures.append(report_dir / fname)
    parts.append(
        table(
            ["forgetting count vs", "Spearman rho (all pixels)", "p", "within-class rho", "pixels used"],
            rows,
            "corr",
        )
    )
    rows = []
    for i, name in enumerate(analysis.class_names):
        cells = td(name)
        for stem in ("margin", "distance"):
            corrs = by_class[stem]
            cells += _num(corrs[i].rho) if corrs else td("–")
        rows.append(cells)
    parts.append(table(["class", "rho vs margin", "rho vs boundary distance"], rows, "corr-by-class"))
    parts.append(
        '<p class="note">A negative rho means pixels that were forgotten more often end with a smaller '
        "margin (closer to the network's decision boundary) or lie closer to a label boundary. The "
        "within-class rho is the pixel-weighted mean of the per-class rhos: classes differ in both how often "
        "their pixels are forgotten and how confident the network is, so the correlation over all pixels "
        "can differ from, even have the opposite sign of, the correlation inside every class (Simpson's "
        "paradox). Pixels in sections with a single class have no boundary distance and are left out.</p>"
    )
    for stem in ("margin", "distance"):
        fname = f"{stem}-{slug(split)}.png"
        if (report_dir / fname) in figures:
            parts.append(f'<img src="{fname}" alt="{stem} vs forgetting {html.escape(split)}">')

    t = analysis.temporal
    parts.append("<h3>When pixels were forgotten</h3>")
    fractions = t.fractions()
    rows = [
        td(name) + _num(int(c)) + _num(fractions[name])
        for name, c in zip(TEMPORAL_GROUPS, t.counts, strict=True)
    ]
    parts.append(table(["group", "pixels", "share"], rows, "temporal"))
    parts.append(
        f'<p class="note">never_forgotten: learned and never forgotten; early / late: forgotten, correct at '
        f"the end, last forgotten at an epoch ≤ {t.early_until} / after it; never_settled: correct at some "
        "epoch but wrong at the last observation; never_learned: never correct.</p>"
    )
    fname = f"temporal-{slug(split)}.png"
    _plot_temporal(analysis, report_dir / fname)
    figures.append(report_dir / fname)
    parts.append(f'<img src="{fname}" alt="temporal {html.escape(split)}">')
    return "\n".join(parts)


def write_maps_report(
    out_dir: str | Path,
    analyses: Mapping[str, MapsAnalysis],
    *,
    metrics: Mapping[str, SegmentationMetrics] | None = None,
    images: Mapping[str, torch.Tensor] | None = None,
    section_names: Mapping[str, Sequence[str]] | None = None,
    sections: int | Sequence[int] = 3,
    title: str = "forgetting maps",
    config_json: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> MapsReport:
    """Write ``<out_dir>/report/index.html`` and its PNGs.

    Args:
        out_dir: the run directory (the report goes to its ``report/`` sub-folder).
        analyses: the analysed maps by split name (``"train"`` first, ``"test"`` optional).
        metrics: segmentation metrics by split name.
        images: uint8 ``[N, C, H, W]`` section images by split name (the first panel of each map PNG).
        section_names: names of the sections by split (e.g. ``"inline 12"``).
        sections: how many (or which) sections get a map PNG per split; see :func:`pick_sections`.
        title: page title.
        config_json: the run's config, shown at the end.
        summary: extra run facts (dataset, model, epochs, class weights) shown at the top.
        seed: seed of the plot subsamples.
    """
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in report_dir.glob("*.png"):
        stale.unlink()
    out = MapsReport(index=report_dir / "index.html")
    metrics = dict(metrics or {})
    first = next(iter(analyses.values()), None)
    names = first.class_names if first is not None else ()
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if summary:
        facts = [
            f"dataset <code>{html.escape(str(summary.get('dataset', '')))}</code>",
            f"model <code>{html.escape(str(summary.get('model', '')))}</code> "
            f"{html.escape(json.dumps(summary.get('model_options', {})))}",
            f"{summary.get('epochs', '?')} epochs",
            f"{summary.get('train_sections', '?')} training and {summary.get('test_sections', '?')} test "
            f"sections of {' × '.join(str(v) for v in summary.get('section_shape', []))} pixels",
            f"device {html.escape(str(summary.get('device', '')))}",
        ]
        parts.append("<p>" + "; ".join(facts) + ".</p>")
        if "class_weights" in summary:
            weights = ", ".join(
                f"{html.escape(n)} {w}" for n, w in zip(names, summary["class_weights"], strict=False)
            )
            parts.append(f'<p class="note">Cross-entropy class weights: {weights}.</p>')
    if "test" in metrics:
        fname = "confusion-test.png"
        _plot_confusion(metrics["test"], names, report_dir / fname)
        out.figures.append(report_dir / fname)
    if metrics:
        parts.append(_metrics_section(metrics, names))
        if "test" in metrics:
            parts.append('<img src="confusion-test.png" alt="test confusion matrix">')

    parts.append("<h2>Forgetting maps</h2>")
    parts.append(
        '<p class="note">Per section: the image with the label boundaries (cyan), the number of forgetting '
        "events (correct → wrong between consecutive epochs), the number of prediction switches, and the "
        "epoch from which the pixel stayed correct. The network was observed in eval mode without "
        "augmentation after every epoch, so every map is aligned with its section.</p>"
    )
    for split, analysis in analyses.items():
        split_names = list((section_names or {}).get(split, []))
        for idx in pick_sections(analysis, sections):
            label = split_names[idx] if idx < len(split_names) else f"section {idx}"
            fname = f"map-{slug(split)}-{idx:04d}.png"
            image = images[split][idx] if images is not None and split in images else None
            n_freq = int(analysis.frequent[idx].sum())
            plot_section_maps(
                analysis,
                idx,
                report_dir / fname,
                image_C_H_W=image,
                title=f"{split} {label}: {n_freq} frequently forgotten pixels",
            )
            out.map_pngs.append(report_dir / fname)
            parts.append(f"<h3>{html.escape(split)}: {html.escape(label)}</h3>")
            parts.append(f'<img src="{fname}" alt="maps {html.escape(split)} {html.escape(label)}">')
    for split, analysis in analyses.items():
        test_metrics = metrics.get("test")
        parts.append(_analysis_section(split, analysis, test_metrics, report_dir, out.figures, seed))
    parts.append(
        '<h2>Files</h2><p class="note"><code>maps.npz</code>: every map (<code>train_forgetting</code>, '
        "<code>train_switches</code>, <code>train_learned_epoch</code>, <code>train_margin</code>, "
        "<code>train_boundary_distance</code>, <code>train_regions</code>, …, and <code>test_*</code> when "
        "the test sections were tracked); <code>summary.json</code>: every number on this page; "
        "<code>tracker-*.npz</code>: the trackers (<code>EventTracker.load</code>); <code>model.pt</code>: "
        "the trained weights.</p>"
    )
    if config_json is not None:
        parts.append("<h2>Config</h2>")
        parts.append(f"<pre>{html.escape(json.dumps(config_json, indent=2))}</pre>")
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    atomic_write_text(out.index, page)
    logger.info("maps report written to %s", out.index)
    return out
