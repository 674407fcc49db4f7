"""The HTML report: AUBC, paired comparisons, and a page whose tables hold the stored numbers."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from forgetting.exceptions import ForgettingError
from forgetting.experiments import ResultStore, write_report
from forgetting.experiments.analysis import (
    MEAN_OOD,
    TIE_THRESHOLD,
    aubc,
    compare_paired,
    load_curves,
    round_gains,
)
from test_experiments_store import make_record, make_spec
from tiny_run import tiny_toml


def test_aubc_definition():
    assert aubc([20, 40, 60], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert aubc([0, 100], [0.0, 1.0]) == pytest.approx(0.5)  # trapezoid / label range
    assert aubc([10, 20, 40], [0.2, 0.4, 0.8]) == pytest.approx((0.3 * 10 + 0.6 * 20) / 30)
    assert aubc([20], [0.7]) == pytest.approx(0.7)
    assert math.isnan(aubc([], []))
    assert math.isnan(aubc([1, 2], [0.5, float("nan")]))
    with pytest.raises(ValueError):
        aubc([1, 2, 3], [0.1, 0.2])


def test_compare_paired_picks_the_test_and_counts():
    a = {s: 0.70 + 0.01 * s for s in range(6)}
    b = {s: a[s] - (0.002 if s == 5 else 0.02) for s in range(6)}  # seed 5 is a tie
    cmp = compare_paired("switch", "random", a, b)
    assert cmp.test == "Wilcoxon signed-rank"
    assert (cmp.wins, cmp.ties, cmp.losses) == (5, 1, 0)
    assert cmp.p_value == pytest.approx(2 / 64)  # exact two-sided p of 6 positive differences
    few = compare_paired("gauss", "entropy", {0: 0.5, 1: 0.6, 2: 0.55}, {0: 0.6, 1: 0.6, 2: 0.5})
    assert few.test == "paired t-test" and (few.wins, few.ties, few.losses) == (1, 1, 1)
    assert 0 <= few.p_value <= 1
    one = compare_paired("gauss", "entropy", {0: 0.5, 7: 0.1}, {0: 0.4})
    assert one.test == "none" and math.isnan(one.p_value) and one.diffs.tolist() == pytest.approx([0.1])
    tie = compare_paired("switch", "margin", {0: 0.5, 1: 0.5}, {0: 0.5 + TIE_THRESHOLD / 2, 1: 0.5})
    assert (tie.wins, tie.ties, tie.losses) == (0, 2, 0)


class _Tables(HTMLParser):
    """Collects <img src> and, per table class, rows of (text, attributes) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables: dict[str, list[list[tuple[str, dict[str, str]]]]] = {}
        self._table: str | None = None
        self._cell: tuple[list[str], dict[str, str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "table":
            self._table = a.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = ([], a)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(("".join(self._cell[0]), self._cell[1]))
            self._cell = None
        elif tag == "table":
            self._table = None


def parse_report(index: Path) -> _Tables:
    p = _Tables()
    p.feed(index.read_text(encoding="utf-8"))
    return p


def table_dicts(rows: list[list[tuple[str, dict[str, str]]]]) -> list[dict[str, tuple[str, dict[str, str]]]]:
    header = [text for text, _ in rows[0]]
    return [dict(zip(header, r, strict=True)) for r in rows[1:]]


def recomputed_aubc(store: ResultStore) -> dict[str, tuple[float, float]]:
    """(test AUBC, mean-OOD AUBC) per experiment, straight from the metrics table with numpy."""
    out = {}
    for row in store.experiments():
        rows = [
            r for r in store.metrics_frame() if r["experiment_id"] == row.id and r["metric"] == "accuracy"
        ]
        rounds = sorted({r["round"] for r in rows})
        n = np.array([next(r["n_labeled"] for r in rows if r["round"] == k) for k in rounds], dtype=float)
        acc = {
            es: np.array(
                [next(r["value"] for r in rows if r["round"] == k and r["eval_set"] == es) for k in rounds]
            )
            for es in {r["eval_set"] for r in rows}
        }
        ood = np.mean([v for es, v in acc.items() if es != "test"], axis=0)

        def trap(y: np.ndarray, n: np.ndarray = n) -> float:
            if len(n) == 1:
                return float(y[0])
            return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(n)) / (n[-1] - n[0]))

        out[row.id] = (trap(acc["test"]), trap(ood))
    return out


def check_report(run_dir: Path) -> _Tables:
    """Every image exists, and the per-experiment AUBC cells equal the AUBC recomputed from the store."""
    index = write_report(run_dir)
    assert index == run_dir / "report" / "index.html"
    page = parse_report(index)
    assert page.images, "the report has no figures"
    for src in page.images:
        assert (index.parent / src).is_file(), src
        assert (index.parent / src).stat().st_size > 1000
    assert "metrics.csv" in page.links and (index.parent / "metrics.csv").is_file()
    with ResultStore(run_dir) as store:
        expected = recomputed_aubc(store)
        n_exp = len(store.experiments())
    rows = table_dicts(page.tables["experiments"])
    assert len(rows) == n_exp
    for row in rows:
        exp_id = row["id"][0]
        test_text, test_attr = row["AUBC test"]
        ood_text, ood_attr = row["AUBC mean OOD"]
        assert float(test_attr["data-value"]) == pytest.approx(expected[exp_id][0], abs=1e-12)
        assert float(test_text) == pytest.approx(expected[exp_id][0], abs=5e-5)
        assert float(ood_attr["data-value"]) == pytest.approx(expected[exp_id][1], abs=1e-12)
        assert float(ood_text) == pytest.approx(expected[exp_id][1], abs=5e-5)
    # Strategy rows: mean and std over seeds of the same numbers.
    by_strategy: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        if row["status"][0] != "done":  # unfinished experiments are left out of the aggregates
            continue
        key = (row["dataset"][0], row["model"][0], row["strategy"][0])
        by_strategy.setdefault(key, []).append(expected[row["id"][0]][0])
    for row in table_dicts(page.tables["aubc"]):
        vals = by_strategy[(row["dataset"][0], row["model"][0], row["strategy"][0])]
        attr = row["AUBC test"][1]
        assert int(row["seeds"][0]) == len(vals)
        assert float(attr["data-mean"]) == pytest.approx(np.mean(vals), abs=1e-12)
        std = np.std(vals, ddof=1) if len(vals) > 1 else 0.0
        assert float(attr["data-std"]) == pytest.approx(std, abs=1e-12)
        mean_text, std_text = re.split(r"\s*±\s*", row["AUBC test"][0])
        assert float(mean_text) == pytest.approx(np.mean(vals), abs=5e-5)
        assert float(std_text) == pytest.approx(std, abs=5e-5)
    return page


def test_report_from_a_synthetic_store(tmp_path):
    run = tmp_path / "run"
    with ResultStore(run) as store:
        for strategy in ("random", "entropy", "switch", "gauss"):
            for seed in range(3):
                spec = make_spec(strategy=strategy, seed=seed, rounds=3)
                store.add_experiment(spec)
                for r in range(4):
                    dyn = strategy in ("switch", "gauss") and r < 3
                    store.write_round(spec.id, make_record(r, dynamics=dyn, last=r == 3, seed=seed + 10 * r))
                store.mark_done(spec.id, 1.0)
        unfinished = make_spec(strategy="margin", seed=0, rounds=3)
        store.add_experiment(unfinished)
        store.write_round(unfinished.id, make_record(0, dynamics=False))
    page = check_report(run)
    # One learning-curve figure (one dataset x model) and one histogram per tracked strategy.
    assert sorted(p.split("-")[0] for p in page.images) == ["curves", "switches", "switches"]
    assert any("r1" in p for p in page.images)  # default: the middle of rounds 0..2
    wtl = table_dicts(page.tables["wtl"])
    pairs = {(r["strategy"][0], r["baseline"][0]) for r in wtl}
    assert ("switch", "random") in pairs and ("gauss", "entropy") in pairs and ("switch", "gauss") in pairs
    assert all(r["test: test"][0] == "paired t-test" for r in wtl if r["baseline"][0] != "margin")
    for r in wtl:
        w, t, lo = (int(x) for x in r["test: W/T/L"][0].split("/"))
        assert w + t + lo == (1 if r["baseline"][0] == "margin" else 3)
    aubc_rows = table_dicts(page.tables["aubc"])
    assert {r["strategy"][0] for r in aubc_rows} == {
        "random",
        "entropy",
        "switch",
        "gauss",
    }  # margin unfinished
    cost = table_dicts(page.tables["cost"])
    assert {r["strategy"][0] for r in cost} == {"random", "entropy", "switch", "gauss", "margin"}
    rnd = next(r for r in cost if r["strategy"][0] == "random")
    assert float(rnd["train s"][1]["data-value"]) == pytest.approx(np.mean([0.25 + r for r in range(4)]))
    assert "unfinished" in page.tables  # the margin run is listed as resumable
    assert write_report(run, histogram_round=2).is_file()  # a chosen round also renders


def _acc(strategy: str, seed: int, rnd: int) -> float:
    """Known accuracies: switch gains 0.01 * round + 0.002 * seed over random, gauss loses 0.01."""
    base = 0.5 + 0.05 * rnd + 0.001 * seed
    return base + {"random": 0.0, "switch": 0.01 * rnd + 0.002 * seed, "gauss": -0.01}[strategy]


def test_round_gains_are_per_round_seed_paired_differences(tmp_path):
    run = tmp_path / "run"
    with ResultStore(run) as store:
        for strategy in ("random", "switch", "gauss"):
            for seed in range(3 if strategy != "gauss" else 2):  # gauss lacks seed 2: pairs only 0 and 1
                spec = make_spec(strategy=strategy, seed=seed, rounds=3)
                store.add_experiment(spec)
                for r in range(4):
                    rec = make_record(r, dynamics=False, last=r == 3, acc=_acc(strategy, seed, r))
                    store.write_round(spec.id, rec)
                store.mark_done(spec.id, 1.0)
        curves = load_curves(store)
    gains = {(g.target, g.baseline, g.eval_set): g for g in round_gains(curves)}
    assert {k[:2] for k in gains} == {
        ("switch", "random"),
        ("switch", "gauss"),
        ("gauss", "random"),
        ("gauss", "switch"),
    }
    g = gains[("switch", "random", "test")]
    # round r: mean over seeds 0..2 of 0.01 r + 0.002 seed = 0.01 r + 0.002
    np.testing.assert_allclose(g.diffs, [0.002, 0.012, 0.022, 0.032])
    assert g.seeds == (0, 1, 2) and g.n_labeled.tolist() == [10, 14, 18, 22]
    assert g.mean == pytest.approx(0.017) and g.max == pytest.approx(0.032) and g.max_labels == 22
    # digits is test - 0.2 for both, so the same gains; mean OOD (digits only) too
    np.testing.assert_allclose(gains[("switch", "random", "digits")].diffs, g.diffs)
    np.testing.assert_allclose(gains[("switch", "random", MEAN_OOD)].diffs, g.diffs)
    h = gains[("switch", "gauss", "test")]  # paired on seeds 0 and 1 only
    assert h.seeds == (0, 1)
    np.testing.assert_allclose(h.diffs, [0.01 * r + 0.001 + 0.01 for r in range(4)])
    loss = gains[("gauss", "random", "test")]
    assert loss.mean == pytest.approx(-0.01) and loss.max == pytest.approx(-0.01)

    # The report renders the same numbers, in percentage points, recomputed here from the store.
    page = check_report(run)
    rows = table_dicts(page.tables["round-gain"])
    assert {r["eval set"][0] for r in rows} == {"test", "digits", MEAN_OOD}
    with ResultStore(run) as store:
        frame = [r for r in store.metrics_frame() if r["metric"] == "accuracy" and r["eval_set"] == "test"]
        by_exp = {row.id: (row.spec.strategy, row.spec.seed) for row in store.experiments()}
    acc: dict[tuple[str, int], dict[int, float]] = {}
    for r in frame:
        acc.setdefault(by_exp[r["experiment_id"]], {})[r["round"]] = r["value"]
    for row in rows:
        if row["eval set"][0] != "test":
            continue
        target, baseline = row["strategy"][0], row["baseline"][0]
        seeds = sorted({s for t, s in acc if t == target} & {s for t, s in acc if t == baseline})
        per_round = [np.mean([acc[(target, s)][r] - acc[(baseline, s)][r] for s in seeds]) for r in range(4)]
        assert int(row["seeds"][0]) == len(seeds) and int(row["rounds"][0]) == 4
        mean_attr = float(row["mean gain (points)"][1]["data-value"])
        assert mean_attr == pytest.approx(100 * np.mean(per_round), abs=1e-9)
        assert float(row["max gain (points)"][1]["data-value"]) == pytest.approx(
            100 * max(per_round), abs=1e-9
        )
        assert float(row["mean gain (points)"][0]) == pytest.approx(100 * np.mean(per_round), abs=5e-3)
        assert int(row["max at (labels)"][0]) == [10, 14, 18, 22][int(np.argmax(per_round))]


TINY_RUN = tiny_toml(
    name="report-tiny",
    strategy=["random", "switch"],
    eval_sets=["test", "digits", "contrast-3"],
    al={"query_size": 10},
)


def test_report_from_a_tiny_run(tmp_path):
    from forgetting.experiments import parse_config, run_experiments

    summary = run_experiments(parse_config(TINY_RUN), tmp_path / "run", progress=False, fail_fast=True)
    assert summary.ok and summary.rounds_written == 4 * 3
    page = check_report(tmp_path / "run")
    assert any(p.startswith("switches-") for p in page.images)  # switch tracked the pool
    curves = [p for p in page.images if p.startswith("curves-")]
    assert curves == ["curves-mnist-5k-small-cnn.png"]
    wtl = table_dicts(page.tables["wtl"])
    assert [(r["strategy"][0], r["baseline"][0], r["test: test"][0]) for r in wtl] == [
        ("switch", "random", "paired t-test")
    ]


def test_report_needs_a_results_database(tmp_path):
    with pytest.raises(ForgettingError, match=r"results\.sqlite"):
        write_report(tmp_path)


def test_the_histogram_shows_the_mixture_gauss_fitted_in_that_round(tmp_path):
    """GauSS stores the mixture it fitted with the round; the report reads it back instead of refitting."""
    from dataclasses import replace

    import torch

    from forgetting.experiments.report import stored_mixture
    from forgetting.strategies import StrategyInputs, get_strategy

    counts = np.concatenate([np.zeros(30), np.full(15, 6.0), np.arange(5, dtype=np.float64)])
    gauss = get_strategy("gauss")
    gauss.select(StrategyInputs(n_pool=counts.size, switches_N=torch.from_numpy(counts)), 4, seed=5)
    fitted = gauss.fitted()
    assert set(fitted) == {
        "gauss_means", "gauss_variances", "gauss_weights", "gauss_n_high", "gauss_n_fit", "gauss_fallback"
    }  # fmt: skip
    spec = make_spec("gauss")
    record = replace(
        make_record(0),
        dynamics={"switches": counts.astype(np.int16)},
        pool_indices=np.arange(counts.size, dtype=np.int64),
        strategy_arrays=fitted,
    )
    with ResultStore(tmp_path / "run") as store:
        store.add_experiment(spec)
        store.write_round(spec.id, record)
        (loaded,) = store.load_rounds(spec.id, arrays=True)
    info = stored_mixture(loaded)
    assert info is not None and info == gauss.last_info
    assert stored_mixture(replace(loaded, strategy_arrays={})) is None  # switch, entropy...: no mixture
    assert get_strategy("switch").fitted() == {}
