"""Active-learning tables from a run directory, as Markdown (for issue notes and the README).

Prints, per strategy (mean ± std over seeds, finished experiments only):

1. the metric of the last round on every evaluation set, and the mean over the OOD sets;
2. the normalised area under the budget curve (AUBC) on every evaluation set and for the mean OOD value;
3. the papers' own metric (they report accuracy gains, "up to 4.5 %", not AUBC): for each of ``--targets``
   (default switch, gauss) against every other strategy, the per-round difference of the metric paired by
   seed (mean over the seeds both ran, rounds aligned by index), as its mean over the rounds and its
   maximum over the rounds, in percentage points, per eval set (see
   ``forgetting.experiments.analysis.round_gains``).

The metric is ``--metric``: by default (``auto``) ``miou`` for segmentation experiments (their rounds hold
it) and ``accuracy`` otherwise; any stored metric name (``pixel_accuracy``, ``fwiou``, ``nll``...) works.
A run that mixes both tasks under ``auto`` prints one pair of tables per metric.

With ``--config`` it first runs (or resumes) that config into the run directory, so one command reproduces
the numbers. Issue 4's table:

    python benchmarks/al_tables.py runs/bench-strategies --config benchmarks/strategies_mnist5k.toml

The quickstart's AUBC table, after ``make demo``:

    python benchmarks/al_tables.py runs/quickstart

``make bench`` runs this script with no arguments, which only prints this help (the grid takes ~10 min).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from forgetting.experiments import ResultStore, load_config, run_experiments
from forgetting.experiments.analysis import (
    MEAN_OOD,
    PROPOSED,
    ExperimentCurves,
    load_curves,
    metric_label,
    round_gains,
)


def _cell(values: list[float], scale: float = 100.0) -> str:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64) * scale
    if arr.size == 0:
        return "–"
    if arr.size == 1:
        return f"{arr[0]:.1f}"
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}"


def tables(run_dir: Path, metric: str = "auto", targets: tuple[str, ...] = PROPOSED) -> str:
    """The Markdown tables of ``run_dir`` (last-round values, AUBC and per-round gains) for ``metric``.

    Args:
        run_dir: a run directory holding ``results.sqlite``.
        metric: a stored metric name, or ``"auto"``: ``miou`` where the experiment's rounds hold it,
            otherwise ``accuracy`` (one set of tables per metric when a run mixes both).
        targets: the strategies whose per-round gains over every other strategy are tabulated.
    """
    with ResultStore(run_dir) as store:
        curves = [c for c in load_curves(store, metric) if c.row.status == "done"]
    if not curves:
        what = "" if metric == "auto" else f" with metric {metric!r}"
        raise SystemExit(f"{run_dir}: no finished experiment{what} in results.sqlite")
    by_metric: dict[str, list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        by_metric[c.metric].append(c)
    order = sorted(by_metric, key=lambda m: (m != "accuracy", m))
    return "\n\n".join(_metric_tables(name, by_metric[name], targets) for name in order)


def _metric_tables(metric: str, curves: list[ExperimentCurves], targets: tuple[str, ...] = PROPOSED) -> str:
    """The last-round, AUBC and per-round-gain tables of ``curves`` (all of one metric); one row per
    dataset, model, strategy and variant (e.g. ``segmentation.reduction=top-q``), with a variant column when
    any is set; the gain table has one row per target and baseline."""
    label = metric_label(metric)
    unit = "labeled images" if any(c.segmentation for c in curves) else "labels"
    groups: dict[tuple[str, str, str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        spec = c.row.spec
        groups[(spec.dataset, spec.model, spec.strategy, spec.variant)].append(c)
    with_variant = any(key[3] for key in groups)
    key_header = "| dataset | model | strategy | " + ("variant | " if with_variant else "") + "seeds | "
    key_rule = "|---|---|---|" + ("---|" if with_variant else "") + "---|"

    def key_cells(key: tuple[str, str, str, str], n: int) -> str:
        dataset, model, strategy, variant = key
        middle = f"{variant} | " if with_variant else ""
        return f"| {dataset} | {model} | {strategy} | {middle}{n} | "

    sets = sorted({s for c in curves for s in c.values}, key=lambda s: (s != "test", s == MEAN_OOD, s))
    labels = sorted({int(c.n_labeled[-1]) for c in curves})
    title = label[0].upper() + label[1:] if label.islower() else label
    out = [
        f"{title} (%) after the last round ({', '.join(map(str, labels))} {unit}), mean ± std over seeds",
        "",
        key_header + " | ".join(f"{s} {label}" for s in sets) + " |",
        key_rule + "---|" * len(sets),
    ]
    for key, members in sorted(groups.items()):
        cells = [
            _cell([float(m.values[s][-1]) if s in m.values else math.nan for m in members]) for s in sets
        ]
        out.append(key_cells(key, len(members)) + " | ".join(cells) + " |")
    out += [
        "",
        f"Normalised AUBC of {label} (%), mean ± std over seeds, per eval set",
        "",
        key_header + " | ".join(f"AUBC {s} {label}" for s in sets) + " |",
        key_rule + "---|" * len(sets),
    ]
    for key, members in sorted(groups.items()):
        cells = [_cell([m.aubc(s) if s in m.values else math.nan for m in members]) for s in sets]
        out.append(key_cells(key, len(members)) + " | ".join(cells) + " |")
    gains = round_gains(curves, targets)
    if gains:
        out += [
            "",
            f"Per-round {label} gain over each baseline (points), paired by seed: mean over rounds / "
            "max over rounds (the papers' metric)",
            "",
            "| dataset | model | strategy | baseline | "
            + ("variant | " if with_variant else "")
            + "seeds | "
            + " | ".join(f"{s} mean / max" for s in sets)
            + " |",
            "|---|---|---|---|" + ("---|" if with_variant else "") + "---|" + "---|" * len(sets),
        ]
        rows: dict[tuple[str, str, str, str, str], dict[str, str]] = defaultdict(dict)
        seeds: dict[tuple[str, str, str, str, str], int] = {}
        for g in gains:
            key5 = (g.dataset, g.model, g.target, g.baseline, g.variant)
            rows[key5][g.eval_set] = f"{100 * g.mean:+.1f} / {100 * g.max:+.1f}" if g.diffs.size else "–"
            seeds[key5] = max(seeds.get(key5, 0), len(g.seeds))
        for key5, cells in rows.items():
            dataset, model, target, baseline, variant = key5
            middle = f"{variant} | " if with_variant else ""
            out.append(
                f"| {dataset} | {model} | {target} | {baseline} | {middle}{seeds[key5]} | "
                + " | ".join(cells.get(s, "–") for s in sets)
                + " |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", nargs="?", type=Path, help="run directory holding results.sqlite")
    parser.add_argument("--config", type=Path, help="run (or resume) this config into RUN_DIR first")
    parser.add_argument("--jobs", type=int, default=None, help="parallel experiments for --config")
    parser.add_argument(
        "--targets",
        default=",".join(PROPOSED),
        help="strategies whose per-round gains over every other strategy are printed (default switch,gauss)",
    )
    parser.add_argument(
        "--metric",
        default="auto",
        help="metric of the tables (default auto: miou where the rounds hold it, otherwise accuracy)",
    )
    args = parser.parse_args(argv)
    if args.run_dir is None:
        parser.print_help()
        return 0
    if args.config is not None:
        t0 = time.perf_counter()
        summary = run_experiments(
            load_config(args.config), args.run_dir, jobs=args.jobs, progress=sys.stderr.isatty()
        )
        print(
            f"{len(summary.experiment_ids)} experiments ({len(summary.finished)} run now, "
            f"{len(summary.skipped)} already done, {len(summary.failed)} failed) "
            f"in {time.perf_counter() - t0:.0f} s\n"
        )
        if not summary.ok:
            for exp_id, error in summary.failed.items():
                print(f"failed: {exp_id}: {error}", file=sys.stderr)
            return 1
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    print(tables(args.run_dir, args.metric, targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
