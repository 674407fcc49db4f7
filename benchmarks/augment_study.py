"""Forgetting-guided augmentation: where does it help? A resumable study (issue 25).

Every arm is one ``run_arm`` of :mod:`forgetting.segmentation.augment_protocol` (the code behind
``forgetting augment``): the same initial weights and batch-order seed per seed, forgetting observed on the
original training sections and the test sections ``epochs`` times per run. Arms:

* ``baseline`` / ``standard``: the original sections, ``S = epochs * ceil(N / batch_size)`` steps (plain, or
  with the standard ±10 degree rotation + left-right flips);
* ``ours:<setting>``: the original sections plus the stylised copies of the sections that hold a frequently
  forgotten region of the seed's ``baseline`` (its training forgetting map), under one of two budgets:
  - ``steps``: the same ``S`` steps as the baseline (the protocol's control: each original is seen less);
  - ``epochs``: ``epochs`` epochs of the enlarged set, ``S' = epochs * ceil(N' / batch_size)`` steps (what
    the paper probably did); it is compared with a ``baseline`` trained for the same ``S'`` steps on the
    original sections (observed every ``S' / epochs`` steps), so a gain from longer training is not credited
    to the method.

A setting varies the region threshold ``tau``, ``top_k_sections``, ``copies`` and the style (method,
strength, source) one factor at a time around the packaged default (``tau = 2``, all sections, 2 copies,
random-conv ``mix = 0.8``).

Outcomes per arm and seed: test mIoU (and on the extra evaluation splits), per-class test accuracy (the two
rarest training classes are tabulated), and the frequently forgotten (FF) area on train and test (forgetting
``>= tau`` of the packaged default, components of ``min_region_area`` px, counted the same way in every arm,
whatever its selection ``tau``). Each arm is compared with the baseline of the same seed and the same number
of steps: mean paired difference and its 95 % t interval over the seeds.

Resumable: every finished run is one JSON line in ``--results`` (default
``runs/augment-study/<dataset>.jsonl``), keyed by a hash of the dataset's full protocol config, the arm's full
settings (regions, style, budget, steps) and the seed; the baselines' training forgetting maps are kept next
to it (``maps/``). Rerunning skips what is done, so more seeds can be added at any time (``--seeds 0-19``).
``--table-only`` prints the tables from the file without training.

Run: the commands of docs/benchmarks.md, "The augmentation study" (five processes in parallel, 87 minutes on
the shared 2-core machine for the seeds there); ``python benchmarks/augment_study.py --table-only`` prints
the tables of both datasets. A dataset's grid is ``GRID`` (seismic) or ``GRID_SMALL`` (nuclei); ``--arms``
picks arms by name, ``--seeds`` seeds (``0-9``, ``0,2,4``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from forgetting.segmentation.augment_protocol import (
    AugmentConfig,
    augment_training_set,
    load_protocol_data,
    parse_augment_config,
    run_arm,
)

RESULTS_DIR = Path("runs/augment-study")
NUCLEI_NPZ = Path("runs/data/dsb2018-nuclei.npz")

# ------------------------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class Arm:
    """One arm: ``kind`` ``baseline``/``standard``/``ours``; for ``ours`` a budget and config overrides."""

    name: str
    kind: str = "ours"
    budget: str = "steps"
    overrides: Mapping[str, Any] = field(default_factory=dict)


def _ours(name: str, budget: str = "steps", **overrides: Any) -> Arm:
    return Arm(f"{name}@{budget}", "ours", budget, overrides)


GRID: tuple[Arm, ...] = (
    Arm("baseline", "baseline"),
    _ours("center"),
    _ours("center", "epochs"),
    _ours("top10", regions={"top_k_sections": 10}),
    _ours("top10", "epochs", regions={"top_k_sections": 10}),
    _ours("tau3", regions={"tau": 3}),
    _ours("fda-test", style={"method": "fda", "source": "test", "options": {"beta": 0.1}}),
    Arm("standard", "standard"),
    _ours("copies1", style={"copies": 1}),
    _ours("copies1", "epochs", style={"copies": 1}),
    _ours("mix0.4", style={"options": {"kernel_sizes": [3, 5], "mix": 0.4}}),
)
"""The selectivity and budget grid: one factor at a time around the packaged default (``center``), the most
informative arms first (a seed runs its arms in this order)."""

#: Smaller grid for the second dataset (same arms minus the style variants).
GRID_SMALL: tuple[Arm, ...] = tuple(a for a in GRID if not a.name.startswith(("mix", "fda")))

#: A seconds-long grid for the tests.
GRID_TINY: tuple[Arm, ...] = (
    Arm("baseline", "baseline"),
    _ours("center"),
    _ours("center", "epochs"),
)


def _seismic() -> dict[str, Any]:
    """The packaged default; the test volume is the shifted geology, the same geology is an extra split."""
    text = resources.files("forgetting.segmentation").joinpath("augment_default.toml").read_text("utf-8")
    base = tomllib.loads(text)
    base["data"]["options"]["test_geology"] = "both"
    base["data"]["test_split"] = "shifted"
    return {"config": base, "extra_eval": ["test"], "grid": GRID}


def _nuclei() -> dict[str, Any]:
    """The DSB 2018 nuclei tiles of ``benchmarks/nuclei_data.py`` through the ``arrays`` path."""
    base = _seismic()["config"]
    base = copy.deepcopy(base)
    base["name"] = "augment-nuclei"
    base["dataset"] = "arrays"
    base["data"] = {"root": str(NUCLEI_NPZ), "seed": 0, "train_split": "train", "test_split": "test"}
    return {"config": base, "extra_eval": [], "grid": GRID_SMALL}


def _tiny() -> dict[str, Any]:
    base = {
        "name": "augment-tiny",
        "device": "cpu",
        "threads": 1,
        "model_options": {"base": 4, "depth": 2},
        "data": {
            "options": {"inlines": 12, "crosslines": 12, "depth": 32, "stride": 2, "test_geology": "both"},
            "test_split": "shifted",
        },
        "train": {"epochs": 3, "batch_size": 4},
        "regions": {"tau": 1, "min_region_area": 1},
        "style": {"method": "random-conv", "copies": 1},
    }
    return {"config": base, "extra_eval": ["test"], "grid": GRID_TINY}


DATASETS = {"seismic": _seismic, "nuclei": _nuclei, "tiny": _tiny}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and key != "options" and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def arm_config(base: Mapping[str, Any], arm: Arm) -> AugmentConfig:
    """The validated protocol config of ``arm`` (the dataset's config with the arm's overrides)."""
    return parse_augment_config(_merge(base, arm.overrides), source=f"<study arm {arm.name}>")


def _identity(config: AugmentConfig) -> dict[str, Any]:
    """What decides a run's result: the config minus the bookkeeping keys."""
    dump = config.model_dump(mode="json")
    for key in ("name", "seeds", "arms", "report"):
        dump.pop(key)
    return dump


def run_key(config: AugmentConfig, what: Mapping[str, Any], seed: int) -> str:
    """A hash of the full settings of one run (config, arm kind, budget, steps) and its seed."""
    text = json.dumps({"config": _identity(config), "run": dict(what), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- storage


class Results:
    """The JSON-lines results file: one finished run per line, ``key`` unique; baseline maps in ``maps/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again (another process running other seeds or arms may have added runs)."""
        if self.path.is_file():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a run cut off while writing: it is simply run again
                    _log(f"{self.path}:{number}: not a complete JSON line, ignored")
                    continue
                self.rows[row["key"]] = row

    def add(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(row, allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # one write of the whole line: processes that share the file (other seeds) never interleave
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rows[row["key"]] = row

    def map_path(self, key: str) -> Path:
        return self.path.parent / "maps" / f"{key}.npy"


# -------------------------------------------------------------------------------------------- the runs


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_study(
    dataset: str,
    seeds: Sequence[int],
    results: Results,
    *,
    arms: Iterable[str] | None = None,
) -> int:
    """Run every missing (arm, seed) of ``dataset``'s grid, seeds outermost; returns the runs made.

    Every run trains and is measured with the dataset's plain config (so the FF areas of all arms are
    counted with one ``tau``); an ``ours`` arm's own config only decides its augmented set, and its key.
    """
    spec = DATASETS[dataset]()
    base = spec["config"]
    wanted = None if arms is None else set(arms)
    grid = [a for a in spec["grid"] if wanted is None or a.name in wanted]
    plain = parse_augment_config(base, source=f"<study {dataset}>")
    data = load_protocol_data(plain)
    extra = {name: data.dataset.splits[name] for name in spec["extra_eval"]}
    every0 = math.ceil(len(data.train) / plain.train.batch_size)
    steps0 = plain.train.epochs * every0
    made = 0

    def one(
        config: AugmentConfig,
        what: dict[str, Any],
        seed: int,
        sections: Any,
        *,
        selection: dict[str, Any] | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        nonlocal made
        key = run_key(config, {k: v for k, v in what.items() if k != "arm"}, seed)  # the label is no setting
        if key not in results.rows and not force:
            results.reload()
        if key in results.rows and not force:
            return results.rows[key]
        tick = time.perf_counter()
        record, forgetting = run_arm(
            plain,
            data,
            seed,
            sections,
            standard=what["kind"] == "standard",
            steps=what["steps"],
            observe_every=what["observe_every"],
            extra_eval=extra,
        )
        wall = time.perf_counter() - tick
        if what["kind"] == "baseline":
            path = results.map_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, forgetting.astype(np.uint8))
        if force and key in results.rows:
            return results.rows[key]
        run = {**what, **({"selection": selection} if selection is not None else {})}
        row = {"key": key, "dataset": dataset, "seed": seed, "run": run, "record": record, "wall": wall}
        results.add(row)
        made += 1
        _log(f"{dataset} seed {seed} {what['arm']}: mIoU {record['test']['mean_iou']:.3f} ({wall:.0f} s)")
        return row

    base_what = {"arm": "baseline", "kind": "baseline", "steps": steps0, "observe_every": every0}
    for seed in seeds:
        forgetting: np.ndarray | None = None
        for arm in grid:
            config = arm_config(base, arm)
            if arm.kind in ("baseline", "standard"):
                one(config, {**base_what, "arm": arm.name, "kind": arm.kind}, seed, data.train)
                continue
            if forgetting is None:  # ours: the seed's baseline map (trained again if the file is gone)
                row = one(plain, base_what, seed, data.train)
                if not results.map_path(row["key"]).is_file():
                    one(plain, base_what, seed, data.train, force=True)
                forgetting = np.load(results.map_path(row["key"])).astype(np.int64)
            aug, _, selection = augment_training_set(config, data, forgetting, seed)
            every = every0 if arm.budget == "steps" else math.ceil(len(aug) / plain.train.batch_size)
            steps = plain.train.epochs * every
            what = {
                "arm": arm.name,
                "kind": "ours",
                "budget": arm.budget,
                "steps": steps,
                "observe_every": every,
            }
            one(config, what, seed, aug, selection=selection)
            if arm.budget == "epochs":  # the baseline trained for the same number of steps
                b_what = {
                    "arm": "baseline" if steps == steps0 else f"baseline@{steps}",
                    "kind": "baseline",
                    "steps": steps,
                    "observe_every": every,
                }
                one(plain, b_what, seed, data.train)
    return made


# ----------------------------------------------------------------------------------------------- tables


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided t interval (``nan`` bounds for fewer than 2)."""
    x = np.asarray(diffs, dtype=np.float64)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def seeds_needed(sd_diff: float, delta: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Smallest n with ``n >= ((t_{1-alpha/2, n-1} + t_{power, n-1}) * sd_diff / delta) ** 2`` (paired t)."""
    if not math.isfinite(sd_diff) or sd_diff <= 0:
        return 2
    for n in range(2, 10_000):
        t = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
        if n >= (t * sd_diff / delta) ** 2:
            return n
    return 10_000


def detectable(sd_diff: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The paired difference that ``n`` seeds detect with ``power`` (two-sided ``alpha``)."""
    if n < 2:
        return math.inf
    t = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(t * sd_diff / math.sqrt(n))


def _rarest(dataset: str) -> list[str]:
    """The two rarest training classes (pixel share of the original masks)."""
    import torch

    from forgetting.segmentation.maps import load_segmentation_splits

    config = parse_augment_config(DATASETS[dataset]()["config"])
    _, train, _, classes = load_segmentation_splits(config, seed=config.data.seed)
    counts = torch.bincount(train.targets[train.targets < len(classes)].flatten(), minlength=len(classes))
    order = np.argsort(counts.numpy(), kind="stable")
    return [classes[i] for i in order[:2]]


def _value(record: Mapping[str, Any], metric: str) -> float:
    if metric == "miou":
        return 100 * float(record["test"]["mean_iou"])
    if metric.startswith("acc:"):
        v = record["test"]["class_accuracy"][metric[4:]]
        return math.nan if v is None else 100 * float(v)
    if metric.startswith("eval:"):
        return 100 * float(record["eval"][metric[5:]]["mean_iou"])
    split = metric.split(":")[1]
    return float(record["regions"][split]["area"])


def tables(results: Results, dataset: str) -> str:
    """The study's two Markdown tables for ``dataset`` (absolute values; paired differences), and n."""
    rows = [r for r in results.rows.values() if r["dataset"] == dataset]
    if not rows:
        return f"(no results for {dataset})"
    spec = DATASETS[dataset]()
    rare = _rarest(dataset)
    metrics = ["miou", *(f"acc:{c}" for c in rare), "ff:train", "ff:test"]
    metrics += [f"eval:{e}" for e in spec["extra_eval"]]
    heads = ["test mIoU", *(f"acc {c}" for c in rare), "train FF area", "test FF area"]
    heads += [f"mIoU on {e}" for e in spec["extra_eval"]]
    by_arm: dict[str, dict[int, dict[str, Any]]] = {}
    baselines: dict[tuple[int, int], dict[str, Any]] = {}
    for r in rows:
        if r["run"]["kind"] == "baseline":
            baselines[(r["seed"], r["run"]["steps"])] = r
            if not r["run"]["arm"].startswith("baseline@"):
                by_arm.setdefault("baseline", {})[r["seed"]] = r
        else:
            by_arm.setdefault(r["run"]["arm"], {})[r["seed"]] = r
    order = [a.name for a in spec["grid"]]
    names = sorted(by_arm, key=lambda a: (order.index(a) if a in order else len(order), a))
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for arm in names:
        groups.append((arm, list(by_arm[arm].values())))
        if arm.endswith("@epochs"):  # the baselines trained for the same steps as this arm, seed by seed
            matched = [baselines.get((s, r["run"]["steps"])) for s, r in sorted(by_arm[arm].items())]
            groups.append((f"baseline, steps of {arm}", [b for b in matched if b is not None]))
    # table 1: absolute values
    lines = [
        f"**{dataset}**: mean ± sd over seeds (mIoU and class accuracy in points; FF area in pixels). "
        f"Rarest training classes: {', '.join(rare)}.",
        "",
        "| arm | seeds | steps | sections | " + " | ".join(heads) + " |",
        "|---|---|---|---|" + "---|" * len(heads),
    ]
    for arm, recs in groups:
        cells = [arm, str(len(recs)), _span([r["run"]["steps"] for r in recs])]
        cells.append(_span([r["record"]["sections"] for r in recs]))
        for m in metrics:
            v = np.array([_value(r["record"], m) for r in recs], dtype=np.float64)
            sd = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0
            digits = 0 if m.startswith("ff") else 1
            cells.append(f"{np.nanmean(v):.{digits}f} ± {sd:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    # table 2: paired differences to the same-budget baseline
    lines += [
        "",
        f"**{dataset}**: arm − baseline of the same seed and the same number of steps, "
        "mean [95 % t interval] over the seeds.",
        "",
        "| arm | budget | n | Δ " + " | Δ ".join(heads) + " |",
        "|---|---|---|" + "---|" * len(heads),
    ]
    sd_center = math.nan
    n_center = 0
    steps0 = next(iter(by_arm["baseline"].values()))["run"]["steps"] if "baseline" in by_arm else None
    comparisons: list[tuple[str, str, list[tuple[dict[str, Any], dict[str, Any] | None]]]] = []
    for arm in names:
        recs = by_arm[arm]
        if arm == "baseline":
            continue
        budget = next(iter(recs.values()))["run"].get("budget", "steps")
        comparisons.append(
            (arm, budget, [(r, baselines.get((s, r["run"]["steps"]))) for s, r in sorted(recs.items())])
        )
    for arm, budget, _ in list(comparisons):
        if budget == "epochs" and steps0 is not None:  # the confounded comparison, for contrast
            recs = by_arm[arm]
            pairs = [(r, baselines.get((s, steps0))) for s, r in sorted(recs.items())]
            comparisons.append((f"{arm} vs the {steps0}-step baseline", "(more steps)", pairs))
    for arm, budget, candidates in comparisons:
        pairs = [(r, b) for r, b in candidates if b is not None]
        cells = [arm, budget, str(len(pairs))]
        for m in metrics:
            d = [_value(r["record"], m) - _value(b["record"], m) for r, b in pairs]
            d = [x for x in d if math.isfinite(x)]
            mean, lo, hi = t_interval(d)
            digits = 0 if m.startswith("ff") else 1
            ci = "" if math.isnan(lo) else f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
            cells.append(f"{mean:+.{digits}f}{ci}")
            if arm == "center@steps" and m == "miou" and len(d) > 1:
                sd_center, n_center = float(np.std(d, ddof=1)), len(d)
        lines.append("| " + " | ".join(cells) + " |")
    if n_center:
        lines += [
            "",
            f"Seeds: the paired mIoU differences of center@steps have sd σ_d = {sd_center:.2f} points "
            f"(n = {n_center}). A paired t test (two-sided 5 %, power 80 %) detects a 2-point difference "
            f"with n = {seeds_needed(sd_center, 2.0)} seeds (smallest n with n ≥ ((t.975 + t.80) σ_d / 2)²); "
            f"with the n = {n_center} run here it detects {detectable(sd_center, n_center):.1f} points.",
        ]
    return "\n".join(lines)


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Forgetting-guided augmentation study (resumable).")
    parser.add_argument("--dataset", choices=sorted(DATASETS), action="append")
    parser.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,1,2 (default 0-5)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="the results file (default: runs/augment-study/DATASET.jsonl)",
    )
    parser.add_argument("--arms", default=None, help="comma-separated arm names (default: the whole grid)")
    parser.add_argument("--table-only", action="store_true", help="print the tables, train nothing")
    args = parser.parse_args(argv)
    datasets = args.dataset or (["seismic", "nuclei"] if args.table_only else ["seismic"])
    tick = time.perf_counter()
    for name in datasets:
        path = args.results or RESULTS_DIR / f"{name}.jsonl"
        if not args.table_only:
            arms = args.arms.split(",") if args.arms else None
            made = run_study(name, _parse_seeds(args.seeds), Results(path), arms=arms)
            _log(f"{name}: {made} new runs")
        results = Results(path)
        print(tables(results, name))
        walls = sum(r["wall"] for r in results.rows.values() if r["dataset"] == name)
        count = sum(r["dataset"] == name for r in results.rows.values())
        print(f"\n{name}: {count} runs in {path}, their summed wall time {walls / 60:.1f} min\n")
    print(f"this invocation: {time.perf_counter() - tick:.0f} s")


if __name__ == "__main__":
    main()
