"""Static HTML report of a run directory: learning curves, AUBC, win/tie/loss, switch histograms, cost.

Everything is computed from the results store (``results.sqlite`` and the ``arrays/`` npz files), written to
``<run_dir>/report/`` as ``index.html`` plus PNG figures and ``metrics.csv``. The page is readable offline
(no scripts, no external resources).

Every experiment has a *headline metric*: ``miou`` when its rounds hold it (segmentation), otherwise
``accuracy`` (classification). Curves, AUBC, win/tie/loss and the per-experiment table use it; a run that
mixes both tasks gets one table per metric (each dataset has one task). Segmentation runs also get the
final per-class IoU and figures of the sections queried at one round.

The numbers come from :mod:`forgetting.experiments.analysis` (its docstring defines them); this
module renders them.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forgetting._html import CSS, new_figure, slug, table, td
from forgetting._io import atomic_write_text, make_directory
from forgetting._lock import directory_lock
from forgetting.exceptions import ConfigError, ForgettingError, StoreCorruptError
from forgetting.experiments.analysis import (
    MEAN_OOD,
    PROPOSED,
    SEGMENTATION_METRIC,
    TIE_THRESHOLD,
    WILCOXON_MIN_PAIRS,
    ExperimentCurves,
    by_metric,
    compare_paired,
    condition_key,
    curves_from_frame,
    groups,
    metric_label,
    nanmean,
    round_gains,
)
from forgetting.experiments.store import PHASES, ExperimentRow, ResultStore
from forgetting.records import RoundRecord
from forgetting.strategies.selectors import GaussInfo

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

#: Queried sections drawn per strategy in the "Queried sections" figures.
_MAX_QUERY_ROWS = 4


def _budget_unit(segmentation: bool) -> str:
    return "labeled images" if segmentation else "labels"


# --------------------------------------------------------------------------------------------------------
# HTML helpers


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _num_cell(x: float, digits: int = 4) -> str:
    value = "nan" if math.isnan(x) else repr(float(x))
    return f'<td class="num" data-value="{value}">{_fmt(x, digits)}</td>'


def _mean_std_cell(values: Sequence[float]) -> str:
    v = np.array([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return '<td class="num" data-mean="nan" data-std="nan">–</td>'
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return (
        f'<td class="num" data-mean="{mean!r}" data-std="{std!r}" data-n="{v.size}">'
        f"{mean:.4f} ± {std:.4f}</td>"
    )


def _line_label(strategy: str, variant: str) -> str:
    return f"{strategy} [{variant}]" if variant else strategy


# --------------------------------------------------------------------------------------------------------
# Figures


def _plot_learning_curves(curves: list[ExperimentCurves], title: str, path: Path) -> None:
    """One panel per eval set (and mean OOD) of ``curves`` (one metric), one line per strategy and variant."""
    lines: dict[tuple[str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        lines[(c.row.spec.strategy, c.row.spec.variant)].append(c)
    panels = sorted({s for c in curves for s in c.values}, key=lambda s: (s != "test", s == MEAN_OOD, s))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.2 * ncols, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        for (strategy, variant), members in sorted(lines.items()):
            members = [m for m in members if panel in m.values]
            if not members:
                continue
            # Round by round over the seeds that reached it (an unfinished seed does not cut the curve).
            length = max(len(m.n_labeled) for m in members)
            x, mean, std = np.zeros(length), np.zeros(length), np.zeros(length)
            for i in range(length):
                have = [m for m in members if len(m.n_labeled) > i]
                ys = np.array([m.values[panel][i] for m in have])
                x[i] = np.mean([m.n_labeled[i] for m in have])
                mean[i] = ys.mean()
                std[i] = ys.std(ddof=1) if len(have) > 1 else 0.0
            (line,) = ax.plot(x, mean, marker=".", label=_line_label(strategy, variant))
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(panel)
        ax.set_xlabel(_budget_unit(any(c.segmentation for c in curves)))
        ax.set_ylabel(metric_label(curves[0].metric))
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} (mean ± std over seeds)")
    fig.savefig(path)


def _plot_histogram(
    counts: np.ndarray,
    info: Any,
    title: str,
    path: Path,
    n_high: int | None,
    *,
    xlabel: str = "switch count",
) -> None:
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    counts = np.asarray(counts, dtype=np.float64)
    lo, hi = float(counts.min()), float(counts.max())
    integral = bool(np.all(counts == np.round(counts)))
    # unit bins for counts; image scores of segmentation (reduced pixel counts) are real-valued
    bins = np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5, 1.0) if integral and hi - lo <= 200 else 100
    ax.hist(counts, bins=bins, density=True, color="#9ab", label=f"pool ({counts.size} samples)")
    if info is not None and np.all(np.isfinite(info.means)):
        grid = np.linspace(lo - 1, hi + 1, 400)
        dens = info.component_densities(grid)
        names = ("low-mean component", "high-mean component")
        for k in range(2):
            ax.plot(
                grid, dens[k], label=f"{names[k]}: mean {info.means[k]:.2f}, weight {info.weights[k]:.2f}"
            )
        ax.plot(grid, np.nansum(dens, axis=0), "k--", linewidth=1, label="mixture")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    sub = "" if n_high is None else f"\n{n_high} of {counts.size} samples in the high-mean component"
    ax.set_title(title + sub, fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path)


def _class_colormap(n_classes: int) -> Any:
    """A fixed categorical colormap of ``n_classes`` colours (tab10, tab20 beyond 10); bad values grey."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    base = colormaps["tab10" if n_classes <= 10 else "tab20"]
    colors = [base(i % base.N) for i in range(max(1, n_classes))]
    return ListedColormap(colors).with_extremes(bad="#bbbbbb")


def _plot_queried_sections(
    arrays: dict[str, np.ndarray],
    query_indices: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: Path,
    *,
    score_name: str,
) -> int:
    """One row per queried section (at most :data:`_MAX_QUERY_ROWS`): image, masks, pixel scores, switches.

    Args:
        arrays: the round's ``query_arrays`` (``images``, ``masks``, ``pred``, optionally ``pixel_scores`` and
            ``switch_maps``), aligned with ``query_indices``.
        query_indices: the queried training-split indices, for the row labels.
        class_names: the class names (their number fixes the colormap); mask values outside
            ``[0, len(class_names))`` (the ignore value) are drawn grey, in the true mask and the prediction.
        title: the figure title.
        path: the PNG to write.
        score_name: the title of the pixel-score column.

    Returns:
        The number of rows drawn.
    """
    from matplotlib.patches import Patch

    images = np.asarray(arrays["images"])
    n = min(_MAX_QUERY_ROWS, images.shape[0])
    columns: list[tuple[str, str]] = [("images", "image")]
    for key, name in (
        ("masks", "true mask"),
        ("pred", "prediction"),
        ("pixel_scores", score_name),
        ("switch_maps", "switches while training"),
    ):
        if key in arrays and np.asarray(arrays[key]).shape[0] >= n:
            columns.append((key, name))
    n_classes = len(class_names)
    if n_classes == 0:  # no per-class metrics: the classes seen in the predictions
        n_classes = int(np.asarray(arrays.get("pred", np.zeros(1))).max(initial=0)) + 1
        class_names = [str(i) for i in range(n_classes)]
    cmap_classes = _class_colormap(n_classes)
    h, w = images.shape[-2:]
    panel_w = 2.6
    panel_h = min(2.6, max(0.8, panel_w * h / max(w, 1)))
    cols = len(columns)
    width, height = (panel_w + 0.7) * cols + 0.6, (panel_h + 0.55) * n + 1.2
    # a fixed layout: constrained layout costs seconds per figure with colorbars
    fig = new_figure(width, height, constrained=False)
    axes = fig.subplots(n, cols, squeeze=False)
    fig.subplots_adjust(
        left=0.6 / width,
        right=1 - 0.3 / width,
        bottom=0.75 / height,
        top=1 - 0.8 / height,
        wspace=0.35,
        hspace=0.55 / (panel_h + 0.55),
    )
    for j, (key, name) in enumerate(columns):
        limits: dict[str, float] = {}
        if key in ("pixel_scores", "switch_maps"):  # one scale per column: the sections compare directly
            values = np.asarray(arrays[key][:n], dtype=np.float32)
            finite = values[np.isfinite(values)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            limits = {"vmin": lo, "vmax": hi if hi > lo else lo + 1.0}
        im = None
        for i in range(n):
            ax = axes[i, j]
            data = np.asarray(arrays[key][i])
            kwargs: dict[str, Any] = {"interpolation": "nearest", "aspect": "auto"}
            if key == "images":  # [C, H, W]: RGB when C == 3, otherwise the first channel in grey
                img = data if data.ndim == 2 else (data.transpose(1, 2, 0) if data.shape[0] == 3 else data[0])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, **kwargs)
            elif key in ("masks", "pred"):
                labels = data.astype(np.int64)
                bad = (labels < 0) | (labels >= n_classes)
                if key == "pred" and "masks" in arrays:  # the ignored pixels of the true mask, grey in both
                    truth = np.asarray(arrays["masks"][i])
                    bad |= (truth < 0) | (truth >= n_classes)
                shown = np.ma.masked_where(bad, labels)
                ax.imshow(shown, cmap=cmap_classes, vmin=-0.5, vmax=n_classes - 0.5, **kwargs)
            else:
                cmap = "viridis" if key == "pixel_scores" else "inferno"
                shown = np.ma.masked_invalid(data.astype(np.float32))
                im = ax.imshow(shown, cmap=cmap, **limits, **kwargs)
            ax.set_title(name, fontsize=8)
            ax.set_xticks([])  # pixel ticks say nothing here, and drawing them costs most of the time
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"sample {int(query_indices[i])}" if i < len(query_indices) else "", fontsize=8)
        if im is not None:
            cbar = fig.colorbar(im, ax=list(axes[:, j]), fraction=0.08, pad=0.02)
            cbar.ax.tick_params(labelsize=6)
    handles = [Patch(color=cmap_classes(k), label=str(name)) for k, name in enumerate(class_names)]
    handles.append(Patch(color="#bbbbbb", label="ignored"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)
    return n


# --------------------------------------------------------------------------------------------------------
# The report


def write_report(
    run_dir: str | Path, *, histogram_round: int | None = None, query_round: int | None = None
) -> Path:
    """Write ``<run_dir>/report/index.html`` (plus PNGs and ``metrics.csv``) and return its path.

    The results store is opened read-only, so a report can be written while a run is still writing the
    directory (it shows the rounds stored so far). Two reports of one directory do not run at once (they
    take the lock ``<run_dir>/.report.lock``). What cannot be read (a damaged ``arrays/<id>/round-*.npz``)
    is left out and listed in a "Could not read" section, with how to recompute it; the rest is written.
    Unfinished experiments that are not part of the latest run's config (``meta.grid``) are left out too,
    with a note: they were replaced by a corrected config.

    Args:
        run_dir: a run directory holding ``results.sqlite``.
        histogram_round: the round whose switch counts are histogrammed; default the middle round among those
            with stored dynamics.
        query_round: segmentation runs: the round whose queried sections are drawn; default the middle round
            among those with stored query images.

    Raises:
        ForgettingError: ``run_dir`` holds no results database, or ``report/`` cannot be written.
        StoreCorruptError: ``results.sqlite`` is empty or damaged (the message says how to recover).
        ConfigError: no stored round matches ``histogram_round`` / ``query_round`` (the message lists the
            rounds that do).
    """
    run_dir = Path(run_dir)
    with ResultStore(run_dir, readonly=True) as store:
        name = store.get_meta("name") or run_dir.name
        rows, stale = _current_rows(store)
        _check_round_option(store, rows, histogram_round, "dynamics.switches", "--round", "switch counts")
        _check_round_option(store, rows, query_round, "query.images", "--query-round", "queried sections")
        report_dir = make_directory(
            run_dir / "report",
            what="report directory",
            hint="the run directory must be writable",
            error=ForgettingError,
        )
        with directory_lock(run_dir, what="a report", lock_name=".report.lock"):
            return _write_report(store, name, rows, stale, report_dir, histogram_round, query_round)


def _current_rows(store: ResultStore) -> tuple[list[ExperimentRow], list[ExperimentRow]]:
    """The experiments to report, and the unfinished ones left out because the latest run's grid (meta
    ``grid``) no longer holds them."""
    rows = store.experiments()
    try:
        grid = set(json.loads(store.get_meta("grid") or "null") or [])
    except ValueError:
        grid = set()
    if not grid:
        return rows, []
    keep = [r for r in rows if r.status == "done" or r.id in grid]
    return keep, [r for r in rows if not (r.status == "done" or r.id in grid)]


def _round_ranges(rounds: Sequence[int]) -> str:
    """``0-3, 5, 7-8`` for sorted round numbers."""
    parts: list[str] = []
    for r in rounds:
        if parts and r == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{r}"
        else:
            parts.append(str(r))
    return ", ".join(parts)


def _check_round_option(
    store: ResultStore, rows: list[ExperimentRow], wanted: int | None, array: str, option: str, what: str
) -> None:
    """A :class:`ConfigError` listing the rounds with ``array`` when no experiment stored it at ``wanted``."""
    if wanted is None:
        return
    rounds: set[int] = set()
    for row in rows:
        rounds |= {r for r, names in store.array_names(row.id).items() if array in names}
    if wanted in rounds:
        return
    if not rounds:
        raise ConfigError(
            f"{option} {wanted}: no stored round holds {what} (no experiment of this run stored them); leave "
            f"{option} out"
        )
    raise ConfigError(
        f"{option} {wanted}: no stored round {wanted} holds {what}; rounds that do: "
        f"{_round_ranges(sorted(rounds))}"
    )


def _write_report(
    store: ResultStore,
    name: str,
    rows: list[ExperimentRow],
    stale: list[ExperimentRow],
    report_dir: Path,
    histogram_round: int | None,
    query_round: int | None,
) -> Path:
    stale_patterns = ("curves-*.png", "switches-*.png", "queries-*.png")
    for old in [p for pattern in stale_patterns for p in report_dir.glob(pattern)]:
        old.unlink()  # figures of an earlier report (e.g. another histogram round)
    unreadable: list[str] = []
    ids = {r.id for r in rows}
    curves = curves_from_frame(store.metrics_frame(), rows, "auto")
    round_rows = [r for r in store.round_table() if r["experiment_id"] in ids]
    store.export_csv(report_dir / "metrics.csv")
    finished = [c for c in curves if c.row.status == "done"]
    segmentation = {c.row.id for c in curves if c.segmentation}
    sections = [
        _section_summary(name, rows, stale),
        _section_curves(curves, report_dir),
        _section_aubc(finished),
        _section_wtl(finished),
        _section_round_gains(finished),
    ]
    if segmentation:
        sections.append(_section_per_class_iou(store, [c for c in finished if c.segmentation]))
    sections.append(_section_histograms(store, rows, report_dir, histogram_round, segmentation, unreadable))
    if segmentation:
        seg_rows = [r for r in rows if r.id in segmentation]
        sections.append(_section_queries(store, seg_rows, report_dir, query_round, unreadable))
    sections += [_section_cost(round_rows), _section_per_experiment(curves)]
    if unreadable:
        sections.insert(1, _section_unreadable(unreadable))
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>forgetting report: {html.escape(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>forgetting report: {html.escape(name)}</h1>\n"
        + "\n".join(sections)
        + '\n<p class="note">All metrics: <a href="metrics.csv">metrics.csv</a>.</p>\n</body>\n</html>\n'
    )
    index = atomic_write_text(report_dir / "index.html", page)
    for problem in unreadable:
        logger.warning("report: left out: %s", problem)
    logger.info("report written to %s", index)
    return index


def _section_unreadable(problems: list[str]) -> str:
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return (
        '<h2>Could not read</h2>\n<p class="failed">These files are damaged or missing; the figures that '
        f"need them are left out, everything else is complete:</p>\n<ul>{items}</ul>"
    )


def _section_summary(name: str, rows: list[ExperimentRow], stale: Sequence[ExperimentRow] = ()) -> str:
    by_status: dict[str, int] = defaultdict(int)
    for r in rows:
        by_status[r.status] += 1
    parts = [
        "<h2>Run</h2>",
        f"<p>{len(rows)} experiments: "
        + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        + f". Datasets: {html.escape(', '.join(sorted({r.spec.dataset for r in rows})))}; models: "
        + f"{html.escape(', '.join(sorted({r.spec.model for r in rows})))}; strategies: "
        + f"{html.escape(', '.join(sorted({r.spec.strategy for r in rows})))}; seeds: "
        + f"{html.escape(', '.join(str(s) for s in sorted({r.spec.seed for r in rows})))}.</p>",
    ]
    unfinished = [r for r in rows if r.status != "done"]
    if unfinished:
        parts.append(
            '<p class="failed">Unfinished experiments (rerun the same config on this directory '
            "to resume them):</p>"
        )
        parts.append(
            table(
                ["id", "experiment", "status", "rounds stored", "error"],
                (
                    td(r.id)
                    + td(r.spec.label)
                    + td(r.status)
                    + td(f"{r.n_rounds}/{r.spec.total_rounds}")
                    + td(r.error or "")
                    for r in unfinished
                ),
                "unfinished",
            )
        )
    early = [r for r in rows if r.status == "done" and r.n_rounds < r.spec.total_rounds]
    if early:
        parts.append(
            '<p class="note">Ended early (the pool ran out; <code>al.on_exhausted = "partial"</code>): '
            + ", ".join(
                html.escape(f"{r.id} ({r.spec.label}, {r.n_rounds}/{r.spec.total_rounds} rounds)")
                for r in early
            )
            + ".</p>"
        )
    if stale:
        parts.append(
            f'<p class="note">Left out: {len(stale)} unfinished experiment(s) that the latest run\'s config '
            "no longer holds (e.g. replaced by a corrected config): "
            + html.escape(", ".join(f"{r.id} ({r.spec.label})" for r in stale))
            + ". Their rounds stay in results.sqlite and metrics.csv.</p>"
        )
    return "\n".join(parts)


def _metric_phrases(curves: list[ExperimentCurves], connector: str) -> list[str]:
    """``"<metric> <connector> <budget unit>"`` per metric of ``curves`` (``accuracy vs labels`` if none)."""
    seen: dict[str, bool] = {}
    for c in curves:
        seen[c.metric] = seen.get(c.metric, False) or c.segmentation
    if not seen:
        seen = {"accuracy": False}
    order = sorted(seen, key=lambda m: (m != "accuracy", m))
    return [f"{metric_label(m)} {connector} {_budget_unit(seen[m])}" for m in order]


def _table_class(base: str, metric: str) -> str:
    """``base`` for accuracy tables (as before segmentation existed), ``"<base> <metric>"`` otherwise."""
    return base if metric == "accuracy" else f"{base} {metric}"


def _aubc_headers(metric: str) -> tuple[str, str]:
    if metric == "accuracy":
        return "AUBC test", "AUBC mean OOD"
    label = metric_label(metric)
    return f"AUBC test ({label})", f"AUBC mean OOD ({label})"


def _metric_heading(metric: str, groups: dict[str, list[ExperimentCurves]]) -> str:
    """An ``<h3>`` naming the metric when a run mixes metrics (one table each), else nothing."""
    return f"<h3>{html.escape(metric_label(metric))}</h3>" if len(groups) > 1 else ""


def _section_curves(curves: list[ExperimentCurves], report_dir: Path) -> str:
    parts = ["<h2>Learning curves</h2>"]
    if not curves:
        return parts[0] + "\n<p>No rounds stored yet.</p>"
    phrases = _metric_phrases(curves, "against the number of")
    what = " and ".join(phrases)
    what = what[0].upper() + what[1:] if what.startswith("accuracy") else what
    parts.append(
        f'<p class="note">{html.escape(what)}; mean ± standard deviation over seeds; one '
        "line per strategy. <em>mean OOD</em> averages every eval set other than <code>test</code>.</p>"
    )
    for (dataset, model, metric), members in groups(curves).items():
        suffix = () if metric == "accuracy" else (metric,)
        fname = f"curves-{slug(dataset, model, *suffix)}.png"
        title = f"{dataset} / {model}" + ("" if metric == "accuracy" else f": {metric_label(metric)}")
        _plot_learning_curves(members, title, report_dir / fname)
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(
            f'<img src="{html.escape(fname)}" '
            f'alt="learning curves {html.escape(dataset)} {html.escape(model)}">'
        )
    return "\n".join(parts)


def _section_aubc(curves: list[ExperimentCurves]) -> str:
    what = " and ".join(_metric_phrases(curves, "vs"))
    parts = [
        "<h2>Normalised area under the budget curve (AUBC)</h2>",
        f'<p class="note">Trapezoid area under {html.escape(what)} divided by the label range (in [0, 1]); '
        "mean ± standard deviation over seeds; finished experiments only.</p>",
    ]
    groups = by_metric(curves) or {"accuracy": []}
    for metric, group in groups.items():
        cond: dict[tuple[str, str, str, str], list[ExperimentCurves]] = defaultdict(list)
        for c in group:
            cond[condition_key(c)].append(c)
        rows = []
        for (dataset, model, strategy, variant), members in sorted(cond.items()):
            rows.append(
                td(dataset)
                + td(model)
                + td(_line_label(strategy, variant))
                + td(len(members))
                + _mean_std_cell([m.aubc("test") for m in members])
                + _mean_std_cell([m.aubc(MEAN_OOD) for m in members])
            )
        heading = _metric_heading(metric, groups)
        if heading:
            parts.append(heading)
        headers = ["dataset", "model", "strategy", "seeds", *_aubc_headers(metric)]
        parts.append(table(headers, rows, _table_class("aubc", metric)))
    return "\n".join(parts)


def _section_wtl(curves: list[ExperimentCurves]) -> str:
    groups = by_metric(curves)
    of = "" if set(groups) <= {"accuracy"} else " of " + " / ".join(metric_label(m) for m in groups)
    parts = [
        "<h2>Win / tie / loss</h2>",
        f'<p class="note">Each of {", ".join(PROPOSED)} against every other strategy with the same dataset, '
        f"model and variant, paired by seed on AUBC{html.escape(of)} (finished experiments only). "
        f"Win: difference ≥ {TIE_THRESHOLD}; loss: ≤ −{TIE_THRESHOLD}; otherwise a tie. "
        f"Test: Wilcoxon signed-rank (scipy) with ≥ {WILCOXON_MIN_PAIRS} pairs, "
        "else the paired t-test; the column names the test used.</p>",
    ]
    made = 0
    for metric, group in groups.items():
        rows = _wtl_rows(group)
        if not rows:
            continue
        heading = _metric_heading(metric, groups)
        if heading:
            parts.append(heading)
        headers = ["dataset", "model", "variant", "strategy", "baseline"]
        for column in ("test", "mean OOD"):
            headers += [f"{column}: W/T/L", f"{column}: mean diff", f"{column}: test", f"{column}: p"]
        parts.append(table(headers, rows, _table_class("wtl", metric)))
        made += 1
    if not made:
        parts.append(f"<p>No run holds {' or '.join(PROPOSED)} together with another strategy.</p>")
    return "\n".join(parts)


def _wtl_rows(curves: list[ExperimentCurves]) -> list[str]:
    """The rendered win/tie/loss rows of ``curves`` (one metric)."""
    by_group: dict[tuple[str, str, str], dict[str, dict[int, ExperimentCurves]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for c in curves:
        s = c.row.spec
        by_group[(s.dataset, s.model, s.variant)][s.strategy][s.seed] = c
    rows = []
    for (dataset, model, variant), strategies in sorted(by_group.items()):
        for target in PROPOSED:
            if target not in strategies:
                continue
            for baseline in sorted(strategies):
                if baseline == target:
                    continue
                cells = td(dataset) + td(model) + td(variant) + td(target) + td(baseline)
                for column in ("test", MEAN_OOD):
                    a = {seed: c.aubc(column) for seed, c in strategies[target].items()}
                    b = {seed: c.aubc(column) for seed, c in strategies[baseline].items()}
                    cmp = compare_paired(target, baseline, a, b)
                    mean_diff = float(cmp.diffs.mean()) if cmp.diffs.size else math.nan
                    cells += (
                        td(f"{cmp.wins}/{cmp.ties}/{cmp.losses}")
                        + _num_cell(mean_diff)
                        + td(cmp.test)
                        + _num_cell(cmp.p_value, 3)
                    )
                rows.append(cells)
    return rows


def _section_round_gains(curves: list[ExperimentCurves]) -> str:
    groups = by_metric(curves)
    of = " / ".join(metric_label(m) for m in groups) or "accuracy"
    parts = [
        "<h2>Per-round gain (the papers' metric)</h2>",
        f'<p class="note">The FALSE and GauSS papers report {html.escape(of)} gains per round ("up to '
        '4.5 %"), not AUBC. Each of ' + ", ".join(PROPOSED) + " against every other strategy with the same "
        "dataset, model and variant: at each round, the difference target − baseline averaged over the seeds "
        "both ran (paired by seed, rounds aligned by index); then its mean over the rounds and its maximum "
        "over the rounds, with the labels where the maximum falls. Percentage points; finished experiments "
        "only; every eval set and the mean OOD value.</p>",
    ]
    made = 0
    for metric, group in groups.items():
        gains = round_gains(group)
        if not gains:
            continue
        heading = _metric_heading(metric, groups)
        if heading:
            parts.append(heading)
        rows = [
            td(g.dataset)
            + td(g.model)
            + td(g.variant)
            + td(g.target)
            + td(g.baseline)
            + td(g.eval_set)
            + td(len(g.seeds))
            + td(g.diffs.size)
            + _num_cell(100.0 * g.mean, 2)
            + _num_cell(100.0 * g.max, 2)
            + td(g.max_labels if g.max_labels >= 0 else "–")
            for g in gains
        ]
        headers = ["dataset", "model", "variant", "strategy", "baseline", "eval set", "seeds", "rounds"]
        headers += ["mean gain (points)", "max gain (points)", "max at (labels)"]
        parts.append(table(headers, rows, _table_class("round-gain", metric)))
        made += 1
    if not made:
        parts.append(f"<p>No run holds {' or '.join(PROPOSED)} together with another strategy.</p>")
    return "\n".join(parts)


def _class_names(metrics: dict[str, dict[str, float]]) -> list[str]:
    """The class names of a segmentation round's metrics (``iou/<name>`` keys), in stored order."""
    names: dict[str, None] = {}
    for values in metrics.values():
        for key in values:
            if key.startswith("iou/"):
                names.setdefault(key.removeprefix("iou/"), None)
    return list(names)


#: eval set (``test`` or :data:`MEAN_OOD`) -> (mIoU, class name -> IoU) of one experiment's last round.
_FinalIoU = dict[str, tuple[float, dict[str, float]]]


def _section_per_class_iou(store: ResultStore, curves: list[ExperimentCurves]) -> str:
    parts = [
        "<h2>Per-class IoU</h2>",
        '<p class="note">IoU of each class after the last round, on the in-distribution <code>test</code> '
        "set and averaged over the OOD eval sets (a class absent from a set is left out of that average); "
        "mean over seeds, finished segmentation experiments only; – where a class is absent everywhere.</p>",
    ]
    # (dataset, model) -> (strategy, variant) -> one (eval -> (mIoU, per-class IoU)) per seed
    table_rows: dict[tuple[str, str], dict[tuple[str, str], list[_FinalIoU]]] = defaultdict(
        lambda: defaultdict(list)
    )
    names: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    for c in curves:
        if c.row.n_rounds < 1:
            continue
        last = store.load_rounds(c.row.id, arrays=False, rounds=[c.row.n_rounds - 1])  # one round only
        if not last:
            continue
        metrics = last[0].metrics
        s = c.row.spec
        classes = _class_names(metrics)
        names[(s.dataset, s.model)].update(dict.fromkeys(classes))
        per_eval: _FinalIoU = {}
        if "test" in metrics:
            test = metrics["test"]
            per_eval["test"] = (
                test.get(SEGMENTATION_METRIC, math.nan),
                {k: test.get(f"iou/{k}", math.nan) for k in classes},
            )
        ood = [v for k, v in metrics.items() if k != "test"]
        if ood:
            per_eval[MEAN_OOD] = (
                float(np.mean([v.get(SEGMENTATION_METRIC, math.nan) for v in ood])),
                {k: nanmean([v.get(f"iou/{k}", math.nan) for v in ood]) for k in classes},
            )
        table_rows[(s.dataset, s.model)][(s.strategy, s.variant)].append(per_eval)
    if not table_rows:
        parts.append("<p>No finished segmentation experiment yet.</p>")
        return "\n".join(parts)
    for (dataset, model), strategies in sorted(table_rows.items()):
        classes = list(names[(dataset, model)])
        rows = []
        for (strategy, variant), seeds in sorted(strategies.items()):
            for eval_set in ("test", MEAN_OOD):
                have = [p[eval_set] for p in seeds if eval_set in p]
                if not have:
                    continue
                cells = td(_line_label(strategy, variant)) + td(len(have)) + td(eval_set)
                cells += _num_cell(nanmean([miou for miou, _ in have]))
                for k in classes:
                    cells += _num_cell(nanmean([per_class.get(k, math.nan) for _, per_class in have]))
                rows.append(cells)
        parts.append(f"<h3>{html.escape(dataset)} / {html.escape(model)}</h3>")
        parts.append(table(["strategy", "seeds", "eval set", "mIoU", *classes], rows, "per-class-iou"))
    return "\n".join(parts)


def _section_histograms(
    store: ResultStore,
    rows: list[ExperimentRow],
    report_dir: Path,
    histogram_round: int | None,
    segmentation: set[str] | frozenset[str] = frozenset(),
    unreadable: list[str] | None = None,
) -> str:
    parts = [
        "<h2>Switch-count histograms</h2>",
        '<p class="note">Switch counts of the tracked pool at one round (the middle one with stored dynamics '
        "unless chosen), for the first seed of each strategy that tracked the pool; for GauSS, the "
        "two-component Gaussian mixture it fitted in that round to choose the queries (stored with the "
        "round).</p>",
    ]
    if segmentation:
        parts.append(
            '<p class="note">Segmentation: one score per pool image, the reduction of its pixel switch '
            "counts that the strategies rank.</p>"
        )
    chosen: dict[tuple[str, str, str, str], ExperimentRow] = {}
    for r in sorted(rows, key=lambda r: r.spec.seed):
        key = (r.spec.dataset, r.spec.model, r.spec.strategy, r.spec.variant)
        chosen.setdefault(key, r)
    made = 0
    for key, row in sorted(chosen.items()):
        try:
            records = store.load_rounds(row.id, arrays=True)
        except StoreCorruptError as exc:
            if unreadable is None:
                raise
            unreadable.append(str(exc))
            continue
        with_dyn = [
            rec for rec in records if "switches" in rec.dynamics and rec.dynamics["switches"].size > 1
        ]
        if not with_dyn:
            continue
        if histogram_round is not None:
            picked = [rec for rec in with_dyn if rec.round == histogram_round]
            if not picked:
                continue
            rec = picked[0]
        else:
            rec = with_dyn[len(with_dyn) // 2]
        counts = np.asarray(rec.dynamics["switches"], dtype=np.float64)
        info = stored_mixture(rec)
        dataset, model, strategy, variant = key
        seg = row.id in segmentation
        title = (
            f"{dataset} / {model} / {_line_label(strategy, variant)}, seed {row.spec.seed}, "
            f"round {rec.round} ({rec.n_labeled} {_budget_unit(seg)})"
        )
        fname = f"switches-{slug(dataset, model, strategy, variant)}-r{rec.round}.png"
        xlabel = "image switch score" if seg else "switch count"
        _plot_histogram(
            counts, info, title, report_dir / fname, None if info is None else info.n_high, xlabel=xlabel
        )
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(f'<img src="{html.escape(fname)}" alt="switch histogram {html.escape(title)}">')
        made += 1
    if made == 0:
        parts.append("<p>No stored round holds switch counts (no strategy tracked the pool).</p>")
    return "\n".join(parts)


def stored_mixture(rec: RoundRecord) -> GaussInfo | None:
    """The GauSS mixture stored with a round (:meth:`GaussStrategy.fitted`), or ``None`` when the round's
    strategy fitted none."""
    arrays = rec.strategy_arrays
    if "gauss_means" not in arrays:
        return None
    fallback = str(arrays["gauss_fallback"]) if "gauss_fallback" in arrays else ""
    return GaussInfo(
        means=tuple(float(v) for v in arrays["gauss_means"]),  # type: ignore[arg-type]
        variances=tuple(float(v) for v in arrays["gauss_variances"]),  # type: ignore[arg-type]
        weights=tuple(float(v) for v in arrays["gauss_weights"]),  # type: ignore[arg-type]
        n_high=int(arrays["gauss_n_high"][0]),
        n_fit=int(arrays["gauss_n_fit"][0]),
        fallback=fallback or None,
    )


def _has_query_images(rec: RoundRecord) -> bool:
    images = rec.query_arrays.get("images")
    return images is not None and images.ndim == 4 and images.shape[0] > 0


def _section_queries(
    store: ResultStore,
    rows: list[ExperimentRow],
    report_dir: Path,
    query_round: int | None,
    unreadable: list[str] | None = None,
) -> str:
    parts = [
        "<h2>Queried sections</h2>",
        '<p class="note">The sections that each strategy queried at one round (the middle one with stored '
        "query images unless chosen; first seed and first variant of each strategy; at most "
        f"{_MAX_QUERY_ROWS} sections): the image, its true mask, the round model's prediction (grey: "
        "ignored pixels), the strategy's per-pixel score (absent for <code>random</code>) and the pixel "
        "switch counts while training (when the pool was tracked).</p>",
    ]
    chosen: dict[tuple[str, str, str], ExperimentRow] = {}
    for r in sorted(rows, key=lambda r: (r.spec.variant, r.spec.seed)):
        chosen.setdefault((r.spec.dataset, r.spec.model, r.spec.strategy), r)
    made = 0
    for (dataset, model, strategy), row in sorted(chosen.items()):
        try:
            records = store.load_rounds(row.id, arrays=True)
        except StoreCorruptError as exc:
            if unreadable is None:
                raise
            if str(exc) not in unreadable:
                unreadable.append(str(exc))
            continue
        with_images = [rec for rec in records if _has_query_images(rec)]
        if not with_images:
            continue
        if query_round is not None:
            picked = [rec for rec in with_images if rec.round == query_round]
            if not picked:
                continue
            rec = picked[0]
        else:
            rec = with_images[len(with_images) // 2]
        variant = row.spec.variant
        total = int(rec.query_arrays["images"].shape[0])
        title = (
            f"{dataset} / {model} / {_line_label(strategy, variant)}, seed {row.spec.seed}, "
            f"round {rec.round} ({rec.n_labeled} labeled images)"
        )
        fname = f"queries-{slug(dataset, model, strategy, variant)}-r{rec.round}.png"
        shown = _plot_queried_sections(
            rec.query_arrays,
            rec.query_indices,
            _class_names(rec.metrics),
            title,
            report_dir / fname,
            score_name=f"{strategy} pixel score",
        )
        parts.append(f"<h3>{html.escape(title)}: {shown} of {total} queried sections</h3>")
        parts.append(f'<img src="{html.escape(fname)}" alt="queried sections {html.escape(title)}">')
        made += 1
    if made == 0:
        where = "" if query_round is None else f" at round {query_round}"
        parts.append(f"<p>No stored round{html.escape(where)} holds queried sections.</p>")
    return "\n".join(parts)


def _section_cost(round_rows: list[dict[str, Any]]) -> str:
    parts = [
        "<h2>Cost per phase</h2>",
        '<p class="note">Mean seconds per round, over every stored round of every seed. Tracking is the '
        "observation of the pool during training.</p>",
    ]
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in round_rows:
        groups[(r["dataset"], r["model"], r["strategy"], r["variant"])].append(r)
    rows = []
    for (dataset, model, strategy, variant), members in sorted(groups.items()):
        cells = td(dataset) + td(model) + td(_line_label(strategy, variant)) + td(len(members))
        cells += _num_cell(float(np.mean([m["epochs"] for m in members])), 1)
        total = np.zeros(len(members))
        for phase in PHASES:
            v = np.array([m[f"{phase}_seconds"] or 0.0 for m in members], dtype=np.float64)
            total += v
            cells += _num_cell(float(v.mean()), 3)
        cells += _num_cell(float(total.mean()), 3)
        rows.append(cells)
    headers = ["dataset", "model", "strategy", "rounds", "epochs", *(f"{p} s" for p in PHASES), "total s"]
    parts.append(table(headers, rows, "cost"))
    return "\n".join(parts)


def _section_per_experiment(curves: list[ExperimentCurves]) -> str:
    groups = by_metric(curves) or {"accuracy": []}
    tables = []
    for metric, group in groups.items():
        rows = []
        for c in group:
            s = c.row.spec
            rows.append(
                td(c.row.id)
                + td(s.dataset)
                + td(s.model)
                + td(s.strategy)
                + td(s.variant)
                + td(s.seed)
                + td(c.row.status)
                + td(f"{len(c.n_labeled)}/{s.total_rounds}")
                + _num_cell(c.aubc("test"))
                + _num_cell(c.aubc(MEAN_OOD))
                + _num_cell(float(c.values["test"][-1]) if "test" in c.values else math.nan)
            )
        headers = [
            "id",
            "dataset",
            "model",
            "strategy",
            "variant",
            "seed",
            "status",
            "rounds",
            *_aubc_headers(metric),
            f"final test {metric_label(metric)}",
        ]
        heading = _metric_heading(metric, groups)
        tables.append(
            (heading + "\n" if heading else "") + table(headers, rows, _table_class("experiments", metric))
        )
    return (
        "<h2>Experiments</h2>\n<details open><summary>AUBC of every experiment</summary>\n"
        + "\n".join(tables)
        + "\n</details>"
    )
