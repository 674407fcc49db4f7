"""The HTML report and the AUBC tables of segmentation runs: mIoU curves, per-class IoU, queried sections."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.exceptions import ConfigError
from forgetting.experiments import ResultStore, write_report
from forgetting.experiments.analysis import headline_metric, load_curves
from forgetting.experiments.config import ExperimentSpec, SegmentationSettings
from forgetting.records import RoundRecord, TrainRecord
from test_experiments_store import make_record, make_spec
from test_report import parse_report, table_dicts

CLASSES = ("upper", "middle", "lower")
EVAL_SETS = ("test", "split:shifted", "gaussian_noise-3")
STRATEGIES = ("random", "switch")
SEEDS = (0, 1)
H, W = 16, 12
IGNORE = 255


def seg_spec(strategy: str, seed: int) -> ExperimentSpec:
    return ExperimentSpec(
        name="seg-unit", dataset="f3", model="unet", strategy=strategy, seed=seed,
        eval_sets=EVAL_SETS, al={"rounds": 2, "query_size": 5},
    )  # fmt: skip


def class_iou(strategy: str, seed: int, rnd: int, eval_set: str, k: int) -> float:
    """A known per-class IoU; NaN where the class is absent (``lower``: seed 1 on test, noise always)."""
    if k == 2 and ((eval_set == "test" and seed == 1) or eval_set == "gaussian_noise-3"):
        return math.nan
    base = 0.3 + 0.1 * k + 0.02 * seed + 0.05 * rnd + (0.1 if strategy == "switch" else 0.0)
    return base - {"test": 0.0, "split:shifted": 0.2, "gaussian_noise-3": 0.1}[eval_set]


def miou(strategy: str, seed: int, rnd: int, eval_set: str) -> float:
    return float(np.nanmean([class_iou(strategy, seed, rnd, eval_set, k) for k in range(len(CLASSES))]))


def seg_record(strategy: str, seed: int, rnd: int, *, last: bool) -> RoundRecord:
    """A segmentation round: metrics by contract; round 0 queries 3 sections, round 1 five, the last none."""
    rng = np.random.default_rng([seed, rnd, len(strategy)])
    n = 0 if last else (3 if rnd == 0 else 5)
    metrics = {}
    for es in EVAL_SETS:
        m = {
            "miou": miou(strategy, seed, rnd, es),
            "pixel_accuracy": 0.6 + 0.05 * rnd,
            "mean_class_accuracy": 0.5 + 0.05 * rnd,
            "fwiou": 0.45 + 0.05 * rnd,
        }
        for k, name in enumerate(CLASSES):
            m[f"iou/{name}"] = class_iou(strategy, seed, rnd, es, k)
            m[f"class_accuracy/{name}"] = 0.7
        metrics[es] = m
    query_arrays: dict[str, np.ndarray] = {}
    if n:
        masks = rng.integers(0, len(CLASSES), size=(n, H, W)).astype(np.int16)
        masks[:, :2, :] = IGNORE  # an ignored band
        query_arrays = {
            "images": rng.integers(0, 256, size=(n, 1, H, W)).astype(np.uint8),
            "masks": masks,
            "pred": rng.integers(0, len(CLASSES), size=(n, H, W)).astype(np.uint8),
        }
        if strategy != "random":
            query_arrays["pixel_scores"] = rng.random((n, H, W)).astype(np.float16)
            query_arrays["switch_maps"] = rng.integers(0, 6, size=(n, H, W)).astype(np.uint8)
    tracked = strategy == "switch" and not last
    pool = np.arange(500, 540, dtype=np.int64)
    return RoundRecord(
        round=rnd,
        n_labeled=4 + 3 * rnd,
        train=TrainRecord(epochs=3, steps=6, seconds=0.5, track_seconds=0.1, train_accuracy=0.9),
        seconds={"train": 0.5, "track": 0.1, "query": 0.05, "eval": 0.02},
        metrics=metrics,
        query_indices=(100 * rnd + np.arange(n)).astype(np.int64),
        query_scores=np.full(n, np.nan) if strategy == "random" else rng.random(n),
        dynamics={"switches": rng.random(pool.size).astype(np.float32) * 4} if tracked else {},
        pool_indices=pool if tracked else np.zeros(0, dtype=np.int64),
        query_arrays=query_arrays,
    )


def write_seg_runs(store: ResultStore, strategies: tuple[str, ...] = STRATEGIES) -> None:
    for strategy in strategies:
        for seed in SEEDS:
            spec = seg_spec(strategy, seed)
            store.add_experiment(spec)
            for rnd in range(3):
                store.write_round(spec.id, seg_record(strategy, seed, rnd, last=rnd == 2))
            store.mark_done(spec.id, 1.0)


def write_cls_runs(store: ResultStore) -> None:
    for strategy in ("random", "switch"):
        for seed in SEEDS:
            spec = make_spec(strategy=strategy, seed=seed, rounds=2)
            store.add_experiment(spec)
            for rnd in range(3):
                store.write_round(spec.id, make_record(rnd, dynamics=False, last=rnd == 2, seed=seed))
            store.mark_done(spec.id, 1.0)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("seg") / "run"
    with ResultStore(run) as store:
        write_seg_runs(store)
    return run


def test_headline_metric_and_curves(seg_run):
    assert headline_metric({"miou", "pixel_accuracy"}) == "miou"
    assert headline_metric({"accuracy", "nll"}) == "accuracy"
    with ResultStore(seg_run) as store:
        curves = load_curves(store)
        pixel = load_curves(store, "pixel_accuracy")
        assert load_curves(store, "accuracy") == []
    assert len(curves) == 4 and all(c.metric == "miou" and c.segmentation for c in curves)
    c = next(c for c in curves if c.row.spec.strategy == "switch" and c.row.spec.seed == 0)
    assert c.n_labeled.tolist() == [4, 7, 10]
    np.testing.assert_allclose(c.values["test"], [miou("switch", 0, r, "test") for r in range(3)])
    ood = [np.mean([miou("switch", 0, r, es) for es in EVAL_SETS[1:]]) for r in range(3)]
    np.testing.assert_allclose(c.values["mean OOD"], ood)
    assert all(p.metric == "pixel_accuracy" and p.segmentation for p in pixel)


def test_segmentation_report(seg_run):
    index = write_report(seg_run)
    text = index.read_text(encoding="utf-8")
    page = parse_report(index)
    for src in page.images:
        assert (index.parent / src).stat().st_size > 1000, src
    # mIoU learning curves, labeled images on the x axis
    assert "curves-f3-unet-miou.png" in page.images
    assert "mIoU against the number of labeled images" in text
    aubc_rows = table_dicts(page.tables["aubc miou"])
    assert {r["strategy"][0] for r in aubc_rows} == set(STRATEGIES)
    assert "AUBC test (mIoU)" in aubc_rows[0] and "AUBC mean OOD (mIoU)" in aubc_rows[0]
    exp_rows = table_dicts(page.tables["experiments miou"])
    assert len(exp_rows) == 4 and "final test mIoU" in exp_rows[0]
    for row in exp_rows:
        strategy, seed = row["strategy"][0], int(row["seed"][0])
        expected = miou(strategy, seed, 2, "test")
        assert float(row["final test mIoU"][1]["data-value"]) == pytest.approx(expected)
    assert "aubc" not in page.tables and "accuracy" not in text.lower().replace("pixel accuracy", "")
    assert {r["baseline"][0] for r in table_dicts(page.tables["wtl miou"])} == {"random"}
    # the papers' metric on mIoU: switch is 0.1 above random on every class, round and seed
    gains = {r["eval set"][0]: r for r in table_dicts(page.tables["round-gain miou"])}
    assert set(gains) == {*EVAL_SETS, "mean OOD"}
    for row in gains.values():
        assert (row["strategy"][0], row["baseline"][0], row["seeds"][0], row["rounds"][0]) == (
            "switch",
            "random",
            "2",
            "3",
        )
        assert float(row["mean gain (points)"][1]["data-value"]) == pytest.approx(10.0)
        assert float(row["max gain (points)"][1]["data-value"]) == pytest.approx(10.0)

    # per-class IoU of the final round: mean over seeds (NaN left out), test and mean OOD
    assert "<h2>Per-class IoU</h2>" in text
    per_class = table_dicts(page.tables["per-class-iou"])
    assert [(r["strategy"][0], r["eval set"][0]) for r in per_class] == [
        ("random", "test"),
        ("random", "mean OOD"),
        ("switch", "test"),
        ("switch", "mean OOD"),
    ]
    switch_test = per_class[2]
    # upper: (0.3 + 0.02*seed + 0.1 + 0.1) over seeds 0, 1 -> 0.51
    assert float(switch_test["upper"][1]["data-value"]) == pytest.approx(0.51)
    # lower: absent from seed 1's test set -> seed 0 only: 0.3 + 0.2 + 0.1 + 0.1
    assert float(switch_test["lower"][1]["data-value"]) == pytest.approx(0.7)
    switch_ood = per_class[3]
    # middle: mean of shifted (-0.2) and noise (-0.1) over seeds: 0.51 + 0.1 - 0.15
    assert float(switch_ood["middle"][1]["data-value"]) == pytest.approx(0.46)
    # lower: absent from the noise set -> the shifted set only, both seeds: 0.71 - 0.2
    assert float(switch_ood["lower"][1]["data-value"]) == pytest.approx(0.51)
    expected_miou = np.mean([miou("random", s, 2, "test") for s in SEEDS])
    assert float(per_class[0]["mIoU"][1]["data-value"]) == pytest.approx(expected_miou)

    # queried sections: default round 1 (the middle of rounds 0 and 1), one figure per strategy
    assert "<h2>Queried sections</h2>" in text
    queries = sorted(p for p in page.images if p.startswith("queries-"))
    assert queries == ["queries-f3-unet-random-r1.png", "queries-f3-unet-switch-r1.png"]
    assert "seed 0, round 1 (7 labeled images): 4 of 5 queried sections" in text
    # the image score of segmentation is histogrammed (switch tracked the pool)
    assert any(p.startswith("switches-f3-unet-switch-") for p in page.images)


def test_query_round_selects_the_round_and_stale_figures_go(seg_run):
    stale = seg_run / "report" / "queries-f3-unet-switch-r1.png"  # as an earlier default report left it
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"png")
    # the command line passes --query-round through; figures of other rounds go
    result = CliRunner().invoke(app, ["report", str(seg_run), "--query-round", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stdout
    index = seg_run / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    queries = sorted(p.name for p in index.parent.glob("queries-*.png"))
    assert queries == ["queries-f3-unet-random-r0.png", "queries-f3-unet-switch-r0.png"]
    assert "round 0 (4 labeled images): 3 of 3 queried sections" in text
    assert "round 1 (7 labeled images): " not in text
    # the last round queries nothing: an error that lists the rounds that do, and the report stays as it was
    with pytest.raises(
        ConfigError,
        match=r"--query-round 2: no stored round 2 holds queried sections; rounds "
        r"that do: 0-1",
    ):
        write_report(seg_run, query_round=2)
    assert sorted(p.name for p in index.parent.glob("queries-*.png")) == queries


def test_mixed_run_keeps_accuracy_for_classification(tmp_path):
    run = tmp_path / "mixed"
    with ResultStore(run) as store:
        write_seg_runs(store, ("random",))  # one strategy: fewer figures, a faster test
        write_cls_runs(store)
    index = write_report(run)
    text = index.read_text(encoding="utf-8")
    page = parse_report(index)
    assert {"curves-mnist-5k-small-cnn.png", "curves-f3-unet-miou.png"} <= set(page.images)
    assert "Accuracy against the number of labels and mIoU against the number of labeled images" in text
    cls = table_dicts(page.tables["aubc"])
    seg = table_dicts(page.tables["aubc miou"])
    assert {r["dataset"][0] for r in cls} == {"mnist-5k"} and "AUBC test" in cls[0]
    assert {r["dataset"][0] for r in seg} == {"f3"}
    assert "final test accuracy" in table_dicts(page.tables["experiments"])[0]
    assert "<h2>Per-class IoU</h2>\n" in text and "<h3>f3 / unet</h3>" in text
    assert len(table_dicts(page.tables["per-class-iou"])) == 2  # segmentation experiments only
    assert [p for p in page.images if p.startswith("queries-")] == ["queries-f3-unet-random-r1.png"]


def test_classification_report_says_accuracy(tmp_path):
    run = tmp_path / "cls"
    with ResultStore(run) as store:
        write_cls_runs(store)
    text = write_report(run).read_text(encoding="utf-8")
    assert "Accuracy against the number of labels;" in text
    assert "final test accuracy" in text and "AUBC test</th>" in text
    assert "mIoU" not in text and "Per-class IoU" not in text and "Queried sections" not in text


def load_al_tables():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "al_tables.py"
    spec = importlib.util.spec_from_file_location("al_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_al_tables_metric(seg_run, tmp_path, capsys):
    al_tables = load_al_tables()
    out = al_tables.tables(seg_run)
    assert out.startswith("mIoU (%) after the last round (10 labeled images)")
    assert "AUBC test mIoU" in out and "accuracy" not in out
    row = next(line for line in out.splitlines() if line.startswith("| f3 | unet | switch | 2 |"))
    expected = [100 * miou("switch", s, 2, "test") for s in SEEDS]
    assert re.split(r"\s*\|\s*", row)[5] == f"{np.mean(expected):.1f} ± {np.std(expected, ddof=1):.1f}"
    gain = next(line for line in out.splitlines() if line.startswith("| f3 | unet | switch | random | 2 |"))
    assert "Per-round mIoU gain over each baseline" in out
    assert re.split(r"\s*\|\s*", gain)[6:-1] == ["+10.0 / +10.0"] * 4  # 3 eval sets and the mean OOD
    assert al_tables.tables(seg_run, "pixel_accuracy").startswith("Pixel accuracy (%) after the last round")
    with pytest.raises(SystemExit, match="metric 'accuracy'"):
        al_tables.tables(seg_run, "accuracy")
    run = tmp_path / "mixed"
    with ResultStore(run) as store:
        write_seg_runs(store, ("random",))
        write_cls_runs(store)
    assert al_tables.main([str(run), "--metric", "auto"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("Accuracy (%) after the last round (18 labels)") < printed.index("mIoU (%)")
    assert "AUBC test accuracy" in printed and "AUBC test mIoU" in printed


def test_al_tables_one_row_per_variant(tmp_path):
    al_tables = load_al_tables()
    run = tmp_path / "variants"
    with ResultStore(run) as store:
        for variant, reduction in (
            ("segmentation.reduction=mean", "mean"),
            ("segmentation.reduction=top-q", "top-q"),
        ):
            for seed in SEEDS:
                spec = seg_spec("switch", seed).model_copy(
                    update={"variant": variant, "segmentation": SegmentationSettings(reduction=reduction)}
                )
                store.add_experiment(spec)
                offset = 0.0 if reduction == "mean" else 0.1
                for rnd in range(3):
                    record = seg_record("switch", seed, rnd, last=rnd == 2)
                    record.metrics = {
                        es: {k: v + offset if k == "miou" else v for k, v in m.items()}
                        for es, m in record.metrics.items()
                    }
                    store.write_round(spec.id, record)
                store.mark_done(spec.id, 1.0)
    out = al_tables.tables(run)
    rows = [line for line in out.splitlines() if line.startswith("| f3 | unet | switch |")]
    assert len(rows) == 4  # two variants, in both tables
    assert "| variant |" in out and "segmentation.reduction=top-q" in rows[1]
    means = [float(re.split(r"\s*\|\s*", r)[6].split(" ")[0]) for r in rows[2:]]
    assert means[1] - means[0] == pytest.approx(10.0, abs=0.11)  # the top-q runs' mIoU is 0.1 higher
