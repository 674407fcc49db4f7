"""Static HTML report of a run directory: learning curves, AUBC, win/tie/loss, switch histograms, cost.

Everything is computed from the results store (``results.sqlite`` and the ``arrays/`` npz files), written to
``<run_dir>/report/`` as ``index.html`` plus PNG figures and ``metrics.csv``. The page is readable offline
(no scripts, no external resources).

Definitions:

* **Learning curve**: accuracy against the number of labels, per eval set and for the *mean OOD* accuracy
  (mean over every eval set other than ``test`` at the same round); mean ± sample standard deviation over
  seeds, rounds aligned by index.
* **Normalised AUBC** (area under the budget curve): ``trapezoid(accuracy, n_labeled) / (n_max - n_min)``,
  in ``[0, 1]``; with a single round it is that round's accuracy.
* **Win/tie/loss**: for ``switch`` and ``gauss`` against every other strategy of the same dataset, model and
  variant, paired by seed on AUBC; a tie is ``|difference| < 0.005``. The paired test is the Wilcoxon
  signed-rank test (scipy) with at least 6 pairs, otherwise the paired t-test; the table names the test.
"""

from __future__ import annotations

import html
import logging
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgetting._html import CSS, new_figure, slug, table, td
from forgetting.exceptions import ForgettingError
from forgetting.experiments.store import DB_NAME, PHASES, ExperimentRow, ResultStore

__all__ = [
    "PROPOSED",
    "TIE_THRESHOLD",
    "Comparison",
    "ExperimentCurves",
    "aubc",
    "compare_paired",
    "load_curves",
    "write_report",
]

logger = logging.getLogger(__name__)

#: The dynamics-based strategies compared against every other strategy.
PROPOSED = ("switch", "gauss")
#: |AUBC difference| below this is a tie.
TIE_THRESHOLD = 0.005
MEAN_OOD = "mean OOD"
_WILCOXON_MIN_PAIRS = 6


def aubc(n_labeled: Sequence[float] | np.ndarray, accuracy: Sequence[float] | np.ndarray) -> float:
    """Normalised area under the accuracy-vs-labels curve (trapezoid rule / label range), in ``[0, 1]``.

    Args:
        n_labeled: ``[R]`` increasing label counts.
        accuracy: ``[R]`` accuracies in ``[0, 1]``.

    Returns:
        The area divided by ``n_labeled[-1] - n_labeled[0]``; the single accuracy when ``R == 1``; NaN when
        ``R == 0`` or any accuracy is NaN.
    """
    x = np.asarray(n_labeled, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"n_labeled {x.shape} and accuracy {y.shape} must be 1-D of equal length")
    if x.size == 0 or np.isnan(y).any():
        return math.nan
    if x.size == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


@dataclass
class ExperimentCurves:
    """The accuracy curves of one experiment.

    Attributes:
        row: the experiment's store row.
        n_labeled: int ``[R]`` labels per round.
        accuracy: eval set -> float64 ``[R]``; includes :data:`MEAN_OOD` when the experiment has OOD sets.
    """

    row: ExperimentRow
    n_labeled: np.ndarray
    accuracy: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ood_sets(self) -> list[str]:
        return [k for k in self.accuracy if k not in ("test", MEAN_OOD)]

    def aubc(self, eval_set: str) -> float:
        """Normalised AUBC of ``eval_set`` (NaN if the experiment has no such set)."""
        if eval_set not in self.accuracy:
            return math.nan
        return aubc(self.n_labeled, self.accuracy[eval_set])


def load_curves(store: ResultStore) -> list[ExperimentCurves]:
    """Accuracy curves of every experiment with at least one stored round."""
    by_exp: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    labels: dict[str, dict[int, int]] = defaultdict(dict)
    for r in store.metrics_frame():
        if r["metric"] != "accuracy":
            continue
        by_exp[r["experiment_id"]][r["round"]][r["eval_set"]] = r["value"]
        labels[r["experiment_id"]][r["round"]] = r["n_labeled"]
    out = []
    for row in store.experiments():
        rounds = by_exp.get(row.id)
        if not rounds:
            continue
        order = sorted(rounds)
        sets = sorted({s for r in order for s in rounds[r]}, key=lambda s: (s != "test", s))
        acc = {s: np.array([rounds[r].get(s, math.nan) for r in order]) for s in sets}
        ood = [s for s in sets if s != "test"]
        if ood:
            acc[MEAN_OOD] = np.mean(np.stack([acc[s] for s in ood]), axis=0)
        out.append(ExperimentCurves(row, np.array([labels[row.id][r] for r in order]), acc))
    return out


@dataclass
class Comparison:
    """A paired comparison of two strategies on one AUBC column.

    Attributes:
        diffs: float64 ``[P]`` ``target - baseline`` per shared seed.
        test: ``"Wilcoxon signed-rank"``, ``"paired t-test"`` or ``"none"``.
        p_value: two-sided p-value; NaN when undefined (fewer than 2 pairs, or no variation).
    """

    target: str
    baseline: str
    diffs: np.ndarray
    wins: int
    ties: int
    losses: int
    test: str
    p_value: float


def compare_paired(target: str, baseline: str, a: dict[int, float], b: dict[int, float]) -> Comparison:
    """Win/tie/loss and a paired test of ``a`` (target) against ``b`` (baseline), both seed -> AUBC."""
    from scipy import stats

    seeds = sorted(s for s in set(a) & set(b) if not (math.isnan(a[s]) or math.isnan(b[s])))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    wins = int((diffs >= TIE_THRESHOLD).sum())
    losses = int((diffs <= -TIE_THRESHOLD).sum())
    ties = int(diffs.size - wins - losses)
    p = math.nan
    if diffs.size >= _WILCOXON_MIN_PAIRS:
        test = "Wilcoxon signed-rank"
        if np.any(diffs != 0):
            p = float(stats.wilcoxon(diffs).pvalue)
        else:
            p = 1.0
    elif diffs.size >= 2:
        test = "paired t-test"
        if np.ptp(diffs) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
        elif np.all(diffs == 0):
            p = 1.0
    else:
        test = "none"
    return Comparison(target, baseline, diffs, wins, ties, losses, test, p)


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
    lines: dict[tuple[str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        lines[(c.row.spec.strategy, c.row.spec.variant)].append(c)
    panels = sorted({s for c in curves for s in c.accuracy}, key=lambda s: (s != "test", s == MEAN_OOD, s))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.2 * ncols, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        for (strategy, variant), members in sorted(lines.items()):
            members = [m for m in members if panel in m.accuracy]
            if not members:
                continue
            # Round by round over the seeds that reached it (an unfinished seed does not cut the curve).
            length = max(len(m.n_labeled) for m in members)
            x, mean, std = np.zeros(length), np.zeros(length), np.zeros(length)
            for i in range(length):
                have = [m for m in members if len(m.n_labeled) > i]
                ys = np.array([m.accuracy[panel][i] for m in have])
                x[i] = np.mean([m.n_labeled[i] for m in have])
                mean[i] = ys.mean()
                std[i] = ys.std(ddof=1) if len(have) > 1 else 0.0
            (line,) = ax.plot(x, mean, marker=".", label=_line_label(strategy, variant))
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(panel)
        ax.set_xlabel("labels")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} (mean ± std over seeds)")
    fig.savefig(path)


def _plot_histogram(counts: np.ndarray, info: Any, title: str, path: Path, n_high: int | None) -> None:
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    counts = np.asarray(counts, dtype=np.float64)
    lo, hi = float(counts.min()), float(counts.max())
    bins = np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5, 1.0) if hi - lo <= 200 else 100
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
    ax.set_xlabel("switch count")
    ax.set_ylabel("density")
    sub = "" if n_high is None else f"\n{n_high} of {counts.size} samples in the high-mean component"
    ax.set_title(title + sub, fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path)


# --------------------------------------------------------------------------------------------------------
# The report


def write_report(run_dir: str | Path, *, histogram_round: int | None = None) -> Path:
    """Write ``<run_dir>/report/index.html`` (plus PNGs and ``metrics.csv``) and return its path.

    Args:
        run_dir: a run directory holding ``results.sqlite``.
        histogram_round: the round whose switch counts are histogrammed; default the middle round among those
            with stored dynamics.

    Raises:
        ForgettingError: ``run_dir`` holds no results database.
    """
    run_dir = Path(run_dir)
    if not (run_dir / DB_NAME).is_file():
        raise ForgettingError(
            f"{run_dir} holds no {DB_NAME}; pass the directory that `forgetting run` wrote (its --out)"
        )
    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*report_dir.glob("curves-*.png"), *report_dir.glob("switches-*.png")]:
        stale.unlink()  # figures of an earlier report (e.g. another histogram round)
    with ResultStore(run_dir) as store:
        name = store.get_meta("name") or run_dir.name
        rows = store.experiments()
        curves = load_curves(store)
        round_rows = store.round_table()
        store.export_csv(report_dir / "metrics.csv")
        finished = [c for c in curves if c.row.status == "done"]
        sections = [
            _section_summary(name, rows),
            _section_curves(curves, report_dir),
            _section_aubc(finished),
            _section_wtl(finished),
            _section_histograms(store, rows, report_dir, histogram_round),
            _section_cost(round_rows),
            _section_per_experiment(curves),
        ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>forgetting report: {html.escape(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>forgetting report: {html.escape(name)}</h1>\n"
        + "\n".join(sections)
        + '\n<p class="note">All metrics: <a href="metrics.csv">metrics.csv</a>.</p>\n</body>\n</html>\n'
    )
    index = report_dir / "index.html"
    tmp = report_dir / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    logger.info("report written to %s", index)
    return index


def _section_summary(name: str, rows: list[ExperimentRow]) -> str:
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
    return "\n".join(parts)


def _groups(curves: list[ExperimentCurves]) -> dict[tuple[str, str], list[ExperimentCurves]]:
    out: dict[tuple[str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        out[(c.row.spec.dataset, c.row.spec.model)].append(c)
    return dict(sorted(out.items()))


def _section_curves(curves: list[ExperimentCurves], report_dir: Path) -> str:
    parts = ["<h2>Learning curves</h2>"]
    if not curves:
        return parts[0] + "\n<p>No rounds stored yet.</p>"
    parts.append(
        '<p class="note">Accuracy against the number of labels; mean ± standard deviation over seeds; one '
        "line per strategy. <em>mean OOD</em> averages every eval set other than <code>test</code>.</p>"
    )
    for (dataset, model), members in _groups(curves).items():
        fname = f"curves-{slug(dataset, model)}.png"
        _plot_learning_curves(members, f"{dataset} / {model}", report_dir / fname)
        parts.append(f"<h3>{html.escape(dataset)} / {html.escape(model)}</h3>")
        parts.append(
            f'<img src="{html.escape(fname)}" '
            f'alt="learning curves {html.escape(dataset)} {html.escape(model)}">'
        )
    return "\n".join(parts)


def _condition_key(c: ExperimentCurves) -> tuple[str, str, str, str]:
    s = c.row.spec
    return (s.dataset, s.model, s.strategy, s.variant)


def _section_aubc(curves: list[ExperimentCurves]) -> str:
    parts = [
        "<h2>Normalised area under the budget curve (AUBC)</h2>",
        '<p class="note">Trapezoid area under accuracy vs labels divided by the label range (in [0, 1]); '
        "mean ± standard deviation over seeds; finished experiments only.</p>",
    ]
    cond: dict[tuple[str, str, str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        cond[_condition_key(c)].append(c)
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
    parts.append(table(["dataset", "model", "strategy", "seeds", "AUBC test", "AUBC mean OOD"], rows, "aubc"))
    return "\n".join(parts)


def _section_wtl(curves: list[ExperimentCurves]) -> str:
    parts = [
        "<h2>Win / tie / loss</h2>",
        f'<p class="note">Each of {", ".join(PROPOSED)} against every other strategy with the same dataset, '
        "model and variant, paired by seed on AUBC (finished experiments only). "
        f"Win: difference ≥ {TIE_THRESHOLD}; loss: ≤ −{TIE_THRESHOLD}; otherwise a tie. "
        f"Test: Wilcoxon signed-rank (scipy) with ≥ {_WILCOXON_MIN_PAIRS} pairs, "
        "else the paired t-test; the column names the test used.</p>",
    ]
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
    if not rows:
        parts.append(f"<p>No run holds {' or '.join(PROPOSED)} together with another strategy.</p>")
        return "\n".join(parts)
    headers = ["dataset", "model", "variant", "strategy", "baseline"]
    for column in ("test", "mean OOD"):
        headers += [f"{column}: W/T/L", f"{column}: mean diff", f"{column}: test", f"{column}: p"]
    parts.append(table(headers, rows, "wtl"))
    return "\n".join(parts)


def _section_histograms(
    store: ResultStore, rows: list[ExperimentRow], report_dir: Path, histogram_round: int | None
) -> str:
    from forgetting.strategies import gauss_select

    parts = [
        "<h2>Switch-count histograms</h2>",
        '<p class="note">Switch counts of the tracked pool at one round (the middle one with stored dynamics '
        "unless chosen), for the first seed of each strategy that tracked the pool, with the two-component "
        "Gaussian mixture GauSS fits (fit seed 0).</p>",
    ]
    chosen: dict[tuple[str, str, str, str], ExperimentRow] = {}
    for r in sorted(rows, key=lambda r: r.spec.seed):
        key = (r.spec.dataset, r.spec.model, r.spec.strategy, r.spec.variant)
        chosen.setdefault(key, r)
    made = 0
    for key, row in sorted(chosen.items()):
        records = store.load_rounds(row.id, arrays=True)
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
        n = max(1, min(row.spec.al.query_size, counts.size))
        _, info = gauss_select(counts, n, seed=0, return_info=True)
        dataset, model, strategy, variant = key
        title = (
            f"{dataset} / {model} / {_line_label(strategy, variant)}, seed {row.spec.seed}, "
            f"round {rec.round} ({rec.n_labeled} labels)"
        )
        fname = f"switches-{slug(dataset, model, strategy, variant)}-r{rec.round}.png"
        _plot_histogram(counts, info, title, report_dir / fname, getattr(info, "n_high", None))
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(f'<img src="{html.escape(fname)}" alt="switch histogram {html.escape(title)}">')
        made += 1
    if made == 0:
        parts.append("<p>No stored round holds switch counts (no strategy tracked the pool).</p>")
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
    rows = []
    for c in curves:
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
            + _num_cell(float(c.accuracy["test"][-1]) if "test" in c.accuracy else math.nan)
        )
    html_table = table(
        [
            "id",
            "dataset",
            "model",
            "strategy",
            "variant",
            "seed",
            "status",
            "rounds",
            "AUBC test",
            "AUBC mean OOD",
            "final test accuracy",
        ],
        rows,
        "experiments",
    )
    return (
        "<h2>Experiments</h2>\n<details open><summary>AUBC of every experiment</summary>\n"
        + html_table
        + "\n</details>"
    )
