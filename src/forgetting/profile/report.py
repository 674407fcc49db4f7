"""The profile's outputs: the per-sample table, ``summary.json`` and the static HTML report.

Everything goes under ``out_dir``: ``samples.csv`` (and ``samples.parquet`` with pyarrow), ``summary.json``
(every number of the report) and ``report/index.html`` with its PNGs (no scripts, no external resources,
readable offline):

* a summary table (data, training, test accuracy, counts, the mislabel rule and its thresholds, timings);
* the data map (cartography: confidence vs variability, coloured by correctness; flagged samples circled);
* the histogram of forgetting counts (never-learned samples in their own bar);
* per-class rates (a table and a bar chart);
* thumbnails of the most forgettable and of unforgettable examples, each with a table of what is shown;
* the likely mislabelled samples: the AUM histogram with the fitted thresholds, thumbnails and a table;
* the pruning table, when the experiment ran.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._html import CSS, new_figure, table, td
from forgetting._io import atomic_write_text
from forgetting.data.source import DataSource
from forgetting.profile.result import ProfileResult
from forgetting.profile.table import write_table

__all__ = [
    "FIGURES",
    "forgettable_rows",
    "per_class_rates",
    "summary",
    "thumbnail_images",
    "unforgettable_rows",
    "write_outputs",
    "write_report",
]

logger = logging.getLogger(__name__)

#: The PNGs of a report (the mislabel ones only with flags): file name -> what it shows.
FIGURES: dict[str, str] = {
    "data_map.png": "data map",
    "forgetting_histogram.png": "forgetting counts",
    "per_class.png": "per-class rates",
    "most_forgettable.png": "most forgettable examples",
    "unforgettable.png": "unforgettable examples",
    "aum_histogram.png": "AUM and the fitted thresholds",
    "likely_mislabeled.png": "likely mislabelled examples",
}

_MAP_POINTS = 20_000  # data-map points drawn at most (a seeded subsample beyond)


# ---------------------------------------------------------------------------------------------- numbers


def per_class_rates(result: ProfileResult) -> list[dict[str, Any]]:
    """One dict per class (by the given label): ``n``, the shares of unforgettable, forgotten (at least
    once), never-learned and flagged samples, the final accuracy, and the mean forgetting count,
    confidence and AUM."""
    d = result.dynamics
    flagged = result.mislabel.flagged if result.mislabel is not None else None
    rows = []
    for k, name in enumerate(result.class_names):
        mask = result.labels == k
        n = int(mask.sum())

        def share(values: np.ndarray, mask: np.ndarray = mask, n: int = n) -> float:
            return float(values[mask].sum()) / n if n else math.nan

        def mean(values: np.ndarray, mask: np.ndarray = mask, n: int = n) -> float:
            return float(np.nanmean(values[mask])) if n else math.nan

        rows.append(
            {
                "class": name,
                "n": n,
                "unforgettable": share(d.unforgettable),
                "forgotten": share(d.forgetting > 0),
                "never_learned": share(d.never_learned),
                "final_accuracy": share(d.correct),
                "mean_forgetting": mean(d.forgetting.astype(np.float64)),
                "mean_confidence": mean(d.confidence.astype(np.float64)),
                "mean_aum": mean(d.aum.astype(np.float64)),
                "flagged": share(flagged) if flagged is not None else None,
            }
        )
    return rows


def forgettable_rows(result: ProfileResult, k: int, *, seed: int = 0) -> np.ndarray:
    """The ``k`` most forgettable rows: never-learned first, then by forgetting count (ties at random)."""
    score = result.dynamics.forgetting_score()
    tie = np.random.default_rng([seed, 7]).random(score.shape[0])
    order = np.lexsort((tie, -score))
    return order[:k].astype(np.int64)


def unforgettable_rows(result: ProfileResult, k: int, *, seed: int = 0) -> np.ndarray:
    """``k`` unforgettable rows drawn at random (seeded): every unforgettable sample is as unforgettable
    as the next, so a random draw shows what the set looks like."""
    rows = np.flatnonzero(result.dynamics.unforgettable)
    rng = np.random.default_rng([seed, 8])
    return np.sort(rng.permutation(rows)[:k]).astype(np.int64)


def flagged_rows(result: ProfileResult, k: int | None = None) -> np.ndarray:
    """The flagged rows, most confidently mislabelled (lowest ``AUM - threshold``) first."""
    if result.mislabel is None:
        return np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(result.mislabel.flagged)
    rows = rows[np.argsort(result.mislabel.gap[rows], kind="stable")]
    return (rows if k is None else rows[:k]).astype(np.int64)


def summary(result: ProfileResult) -> dict[str, Any]:
    """Every number of the report, JSON-ready."""
    d = result.dynamics
    out: dict[str, Any] = {
        "n": result.n,
        "num_classes": len(result.class_names),
        "classes": list(result.class_names),
        "observe": result.observe,
        "epochs": result.train.epochs,
        "steps": result.train.steps,
        "train_accuracy": _num(result.train.train_accuracy),
        "test_accuracy": _num(result.test_accuracy),
        "unforgettable": int(d.unforgettable.sum()),
        "forgotten_at_least_once": int((d.forgetting > 0).sum()),
        "never_learned": int(d.never_learned.sum()),
        "forgetting_histogram": {str(c): int(v) for c, v in _histogram(result).items()},
        "per_class": [
            {k: _num(v) if isinstance(v, float) else v for k, v in r.items()} for r in per_class_rates(result)
        ],
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }
    if result.mislabel is not None:
        m = result.mislabel
        out["mislabel"] = {
            "method": m.method,
            "thresholds": m.thresholds,
            "percentile": m.percentile,
            "fraction": m.fraction,
            "flagged": int(m.flagged.sum()),
        }
    if result.label_flipped is not None:
        flipped = result.label_flipped
        out["label_flipped"] = int(flipped.sum())
        if result.mislabel is not None:
            hits = int((result.mislabel.flagged & flipped).sum())
            out["mislabel"]["precision"] = hits / max(int(result.mislabel.flagged.sum()), 1)
            out["mislabel"]["recall"] = hits / max(int(flipped.sum()), 1)
    if result.pruning:
        out["pruning"] = [
            {
                "fraction": p.fraction,
                "removed": p.removed,
                "unforgettable": p.unforgettable,
                "forgetting_accuracy": p.forgetting_accuracy,
                "random_accuracy": p.random_accuracy,
                "full_accuracy": _num(p.full_accuracy),
            }
            for p in result.pruning
        ]
    return out


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _histogram(result: ProfileResult) -> dict[int | str, int]:
    """Samples per forgetting count among the learned ones, then ``"never learned"``."""
    d = result.dynamics
    learned = ~d.never_learned & (d.observations > 0)
    counts = np.bincount(d.forgetting[learned], minlength=1)
    hist: dict[int | str, int] = {c: int(v) for c, v in enumerate(counts)}
    hist["never learned"] = int(d.never_learned.sum())
    return hist


# ---------------------------------------------------------------------------------------------- images


def thumbnail_images(source: DataSource, rows: np.ndarray) -> np.ndarray:
    """float32 ``[M, H, W]`` (grey) or ``[M, H, W, 3]`` images of ``rows`` in ``[0, 1]`` for display:
    in-memory uint8 images as they are, a lazy source's transformed inputs rescaled per image."""
    if rows.size == 0:
        return np.zeros((0, 1, 1), dtype=np.float32)
    tensors = source.as_tensors()
    if tensors is not None:
        idx = torch.from_numpy(rows).to(tensors[0].device)
        x = tensors[0].index_select(0, idx).float().div(255.0).cpu()
    else:
        parts = [xb.cpu().float() for xb, _ in source.subset(rows).batches(torch.device("cpu"), 256)]
        x = torch.cat(parts)
        flat = x.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        x = ((x - lo[:, None, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None, None]).clamp(0, 1)
    arr = x.numpy()
    if arr.shape[1] == 1:
        return arr[:, 0]
    return arr[:, :3].transpose(0, 2, 3, 1)


def _gallery(images: np.ndarray, captions: Sequence[str], path: Path, title: str) -> Path:
    m = len(captions)
    cols = min(8, max(m, 1))
    rows = max(1, math.ceil(m / cols))
    fig = new_figure(1.35 * cols, 1.55 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < m:
            ax.imshow(images[i], cmap="gray" if images.ndim == 3 else None, vmin=0, vmax=1)
            ax.set_title(captions[i], fontsize=7)
    if m == 0:
        axes[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------- figures


def _data_map(result: ProfileResult, path: Path) -> Path:
    d = result.dynamics
    ok = d.observations > 0
    rows = np.flatnonzero(ok)
    if rows.size > _MAP_POINTS:
        rows = np.sort(np.random.default_rng([0, 9]).permutation(rows)[:_MAP_POINTS])
    fig = new_figure(6.0, 4.6)
    ax = fig.subplots()
    sc = ax.scatter(
        d.variability[rows], d.confidence[rows], c=d.correctness[rows], cmap="viridis", vmin=0, vmax=1, s=6
    )
    if result.mislabel is not None:
        fl = rows[result.mislabel.flagged[rows]]
        ax.scatter(
            d.variability[fl],
            d.confidence[fl],
            s=22,
            facecolors="none",
            edgecolors="red",
            linewidths=0.6,
            label=f"likely mislabelled ({int(result.mislabel.flagged.sum())})",
        )
        ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc, ax=ax, label="correctness (share of observations correct)")
    ax.set_xlabel("variability (std of the gold-label probability)")
    ax.set_ylabel("confidence (mean gold-label probability)")
    ax.set_title(f"data map, {rows.size:,} of {result.n:,} samples")
    fig.savefig(path)
    return path


def _forgetting_histogram(result: ProfileResult, path: Path) -> Path:
    hist = _histogram(result)
    labels = [str(k) for k in hist]
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    colors = ["tab:blue"] * (len(labels) - 1) + ["tab:red"]
    ax.bar(range(len(labels)), list(hist.values()), color=colors)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("forgetting events (0 = unforgettable)")
    ax.set_ylabel("samples")
    ax.set_title("forgetting counts")
    fig.savefig(path)
    return path


def _per_class_figure(rates: list[dict[str, Any]], path: Path) -> Path:
    keys = [
        ("unforgettable", "unforgettable"),
        ("forgotten", "forgotten >= 1"),
        ("never_learned", "never learned"),
    ]
    if rates and rates[0]["flagged"] is not None:
        keys.append(("flagged", "likely mislabelled"))
    x = np.arange(len(rates))
    width = 0.8 / len(keys)
    fig = new_figure(max(5.0, 0.6 * len(rates) + 2), 3.6)
    ax = fig.subplots()
    for i, (key, label) in enumerate(keys):
        ax.bar(x + i * width, [r[key] for r in rates], width, label=label)
    ax.set_xticks(x + 0.4 - width / 2, [str(r["class"]) for r in rates], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of the class")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("per-class rates")
    fig.savefig(path)
    return path


def _aum_histogram(result: ProfileResult, path: Path) -> Path:
    assert result.mislabel is not None
    m = result.mislabel
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    real = m.aum_runs[0][~np.isin(np.arange(result.n), m.threshold_rows[0])]
    fake = m.aum_runs[0][m.threshold_rows[0]]
    bins = np.histogram_bin_edges(np.concatenate([real, fake]), bins=50)
    ax.hist(real, bins=bins, alpha=0.6, label="samples with their own label")
    ax.hist(fake, bins=bins, alpha=0.6, label="threshold samples (fake class)")
    for i, t in enumerate(m.thresholds):
        ax.axvline(t, color="red", linestyle="--", linewidth=1, label="thresholds" if i == 0 else None)
    ax.set_xlabel("AUM (first threshold run)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7)
    ax.set_title(f"AUM: below the {m.percentile:g}th percentile of the threshold samples is flagged")
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------- html


def _fmt(x: object, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, float | np.floating):
        return "" if math.isnan(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


def _num_td(x: object, digits: int = 3) -> str:
    return f'<td class="num">{html.escape(_fmt(x, digits))}</td>'


def _sample_table(result: ProfileResult, rows: np.ndarray, cls: str) -> str:
    d = result.dynamics
    names = result.class_names
    headers = ["row", "label", "predicted", "forgetting", "never learned", "confidence", "AUM", "final loss"]
    body = []
    for r in rows.tolist():
        body.append(
            td(r)
            + td(names[result.labels[r]])
            + td(names[int(np.clip(d.predicted[r], 0, len(names) - 1))])
            + _num_td(int(d.forgetting[r]))
            + td("yes" if d.never_learned[r] else "no")
            + _num_td(d.confidence[r])
            + _num_td(d.aum[r])
            + _num_td(d.final_loss[r])
        )
    return table(headers, body, cls)


def _captions(result: ProfileResult, rows: np.ndarray, kind: str) -> list[str]:
    d = result.dynamics
    names = result.class_names
    out = []
    for r in rows.tolist():
        label = names[result.labels[r]]
        if kind == "forgettable":
            count = "never learned" if d.never_learned[r] else f"forgot {int(d.forgetting[r])}x"
            out.append(f"#{r} {label}\n{count}")
        elif kind == "mislabeled":
            pred = names[int(np.clip(d.predicted[r], 0, len(names) - 1))]
            out.append(f"#{r} {label}\nmodel: {pred}")
        else:
            out.append(f"#{r} {label}\nlearned ep {int(d.first_learned_epoch[r])}")
    return out


def write_report(result: ProfileResult, source: DataSource, out_dir: Path, *, thumbnails: int = 24) -> Path:
    """Write ``out_dir/report/index.html`` and its PNGs; returns the index path."""
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    d = result.dynamics
    rates = per_class_rates(result)
    info = summary(result)

    sections: list[str] = []
    rows_summary = [
        ("samples", f"{result.n:,}"),
        ("classes", str(len(result.class_names))),
        (
            "observation",
            result.observe
            + (
                " (the training batches' own predictions)"
                if result.observe == "presentation"
                else " (an eval-mode pass after every epoch)"
            ),
        ),
        ("epochs", str(result.train.epochs)),
        ("training accuracy (last epoch)", _fmt(result.train.train_accuracy)),
        ("test accuracy", _fmt(result.test_accuracy)),
        ("unforgettable (learned, never forgotten)", f"{info['unforgettable']:,}"),
        ("forgotten at least once", f"{info['forgotten_at_least_once']:,}"),
        ("never learned", f"{info['never_learned']:,}"),
    ]
    if result.mislabel is not None:
        rows_summary += [
            ("likely mislabelled", f"{int(result.mislabel.flagged.sum()):,}"),
            ("mislabel rule", result.mislabel.method),
            ("AUM thresholds", ", ".join(f"{t:.3f}" for t in result.mislabel.thresholds)),
        ]
    if "label_flipped" in info:
        rows_summary.append(("labels flipped on purpose", f"{info['label_flipped']:,}"))
        if "precision" in info.get("mislabel", {}):
            m = info["mislabel"]
            rows_summary.append(
                ("flags vs flipped labels", f"precision {m['precision']:.3f}, recall {m['recall']:.3f}")
            )
    rows_summary.append(("seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())))
    sections.append(
        "<h2>Summary</h2>\n" + table(["", "value"], [td(k) + td(v) for k, v in rows_summary], "summary")
    )

    _data_map(result, report / "data_map.png")
    sections.append(
        '<h2>Data map</h2>\n<p class="note">Each sample at its variability (x) and confidence (y) over the '
        "epochs, coloured by correctness (Swayamdipta et al. 2020): easy-to-learn samples sit top left, "
        "hard-to-learn ones bottom left (often mislabelled), ambiguous ones to the right.</p>\n"
        '<img src="data_map.png" alt="data map">'
    )
    _forgetting_histogram(result, report / "forgetting_histogram.png")
    hist = _histogram(result)
    sections.append(
        "<h2>Forgetting counts</h2>\n"
        + table(["forgetting events", "samples"], [td(k) + _num_td(v) for k, v in hist.items()], "histogram")
        + '\n<img src="forgetting_histogram.png" alt="forgetting counts">'
    )
    _per_class_figure(rates, report / "per_class.png")
    headers = [
        "class",
        "n",
        "unforgettable",
        "forgotten",
        "never learned",
        "final accuracy",
        "mean forgetting",
        "mean confidence",
        "mean AUM",
    ]
    if result.mislabel is not None:
        headers.append("likely mislabelled")
    body = []
    for r in rates:
        cells = td(r["class"]) + _num_td(r["n"])
        cells += "".join(
            _num_td(r[k])
            for k in (
                "unforgettable",
                "forgotten",
                "never_learned",
                "final_accuracy",
                "mean_forgetting",
                "mean_confidence",
                "mean_aum",
            )
        )
        if result.mislabel is not None:
            cells += _num_td(r["flagged"])
        body.append(cells)
    sections.append(
        "<h2>Per-class rates</h2>\n"
        + table(headers, body, "per-class")
        + '\n<img src="per_class.png" alt="per-class rates">'
    )

    top = forgettable_rows(result, thumbnails)
    _gallery(
        thumbnail_images(source, top),
        _captions(result, top, "forgettable"),
        report / "most_forgettable.png",
        "most forgettable",
    )
    sections.append(
        '<h2>Most forgettable examples</h2>\n<p class="note">Never-learned samples first (Toneva et al. rank '
        "them as forgotten infinitely often), then by forgetting count.</p>\n"
        '<img src="most_forgettable.png" alt="most forgettable examples">\n'
        + _sample_table(result, top, "forgettable")
    )
    calm = unforgettable_rows(result, thumbnails)
    _gallery(
        thumbnail_images(source, calm),
        _captions(result, calm, "unforgettable"),
        report / "unforgettable.png",
        "unforgettable",
    )
    sections.append(
        "<h2>Unforgettable examples</h2>\n"
        f'<p class="note">A random draw of the {int(d.unforgettable.sum()):,} '
        "samples learned and never forgotten.</p>\n"
        '<img src="unforgettable.png" alt="unforgettable examples">\n'
        + _sample_table(result, calm, "unforgettable")
    )
    if result.mislabel is not None:
        m = result.mislabel
        _aum_histogram(result, report / "aum_histogram.png")
        flagged = flagged_rows(result)
        shown = flagged[:thumbnails]
        _gallery(
            thumbnail_images(source, shown),
            _captions(result, shown, "mislabeled"),
            report / "likely_mislabeled.png",
            "likely mislabelled",
        )
        listed = flagged[:200]
        sections.append(
            f"<h2>Likely mislabelled samples ({flagged.size:,})</h2>\n"
            f'<p class="note">{html.escape(m.method)}. '
            "Threshold samples are a random share of the training set relabelled to a fake extra class, so "
            "they are mislabelled by construction; a sample whose area under the margin is lower than theirs "
            "is flagged. Most suspicious first"
            + (f"; the first 200 of {flagged.size:,} listed" if flagged.size > 200 else "")
            + ".</p>\n"
            '<img src="aum_histogram.png" alt="AUM and the fitted thresholds">\n'
            '<img src="likely_mislabeled.png" alt="likely mislabelled examples">\n'
            + _sample_table(result, listed, "mislabeled")
        )
    if result.pruning:
        body = [
            _num_td(f"{p.fraction:.0%}")
            + _num_td(p.removed)
            + _num_td(p.unforgettable)
            + _num_td(p.forgetting_accuracy)
            + _num_td(p.random_accuracy)
            + _num_td(p.full_accuracy)
            for p in result.pruning
        ]
        sections.append(
            '<h2>Pruning</h2>\n<p class="note">Test accuracy after removing a fraction of the training set '
            "and retraining the same network from the same initialisation: the least forgettable samples "
            "first (Toneva et al.) against random samples.</p>\n"
            + table(
                ["removed", "samples removed", "unforgettable", "by forgetting", "at random", "all data"],
                body,
                "pruning",
            )
        )
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>forgetting profile</title>'
        f"<style>{CSS}</style></head><body>\n<h1>Profile of a classifier</h1>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    index = report / "index.html"
    atomic_write_text(index, page)
    return index


def write_outputs(
    result: ProfileResult, source: DataSource, out_dir: Path, *, thumbnails: int = 24
) -> dict[str, Path]:
    """The table, ``summary.json`` and the report under ``out_dir``; returns their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    paths = write_table(result.columns(), out_dir)
    files["table"] = paths[0]
    if len(paths) > 1:
        files["parquet"] = paths[1]
    files["report"] = write_report(result, source, out_dir, thumbnails=thumbnails)
    files["summary"] = atomic_write_text(
        out_dir / "summary.json", json.dumps(summary(result), indent=2) + "\n"
    )
    return files
