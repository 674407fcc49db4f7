"""benchmarks/augment_study.py (issue 25): resumable runs, paired tables, seed-count rule; the nuclei data.

The study's own grid takes an hour; these tests run its ``tiny`` dataset (a 12 x 12 x 32 synthetic volume,
3 epochs) for one seed, a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


study = _load("augment_study")
nuclei = _load("nuclei_data")


def test_study_is_resumable_and_pairs_each_arm_with_the_same_steps_baseline(tmp_path: Path) -> None:
    path = tmp_path / "study.jsonl"
    made = study.run_study("tiny", [0], study.Results(path))
    results = study.Results(path)
    rows = list(results.rows.values())
    assert made == len(rows) == len(path.read_text().splitlines())
    by_arm = {r["run"]["arm"]: r for r in rows}
    base, same, longer = by_arm["baseline"], by_arm["center@steps"], by_arm["center@epochs"]
    n = base["record"]["sections"]
    assert base["run"]["steps"] == same["run"]["steps"] == 3 * math.ceil(n / 4)  # 3 epochs, batch 4
    added = same["run"]["selection"]["stylised_copies"]
    assert same["record"]["sections"] == longer["record"]["sections"] == n + added
    assert longer["run"]["steps"] == 3 * math.ceil((n + added) / 4)
    # the equal-epochs arm has a baseline trained for exactly its steps (the plain baseline if no copies)
    assert any(r["run"]["kind"] == "baseline" and r["run"]["steps"] == longer["run"]["steps"] for r in rows)
    assert results.map_path(base["key"]).is_file()
    table = study.tables(results, "tiny")
    # a rerun trains nothing and prints the same tables; a new seed adds only its runs
    assert study.run_study("tiny", [0], study.Results(path)) == 0
    assert study.tables(study.Results(path), "tiny") == table
    # the table's paired difference is the mean of (arm - same-steps baseline) over the seeds
    delta = 100 * (same["record"]["test"]["mean_iou"] - base["record"]["test"]["mean_iou"])
    line = next(x for x in table.splitlines() if x.startswith("| center@steps | steps |"))
    assert line.split("|")[4].strip().startswith(f"{delta:+.1f}")
    assert "rijnland_chalk" in table and "scruff" in table  # the rarest two training facies
    keys = [json.loads(x)["key"] for x in path.read_text().splitlines()]
    assert len(keys) == len(set(keys))
    with path.open("a") as f:  # a line cut off by a kill is ignored, not fatal
        f.write('{"key": "trunc')
    assert len(study.Results(path).rows) == len(rows)


def test_run_key_covers_the_settings_and_the_seed() -> None:
    base = study.DATASETS["tiny"]()["config"]
    center = study.arm_config(base, study._ours("center"))
    tau3 = study.arm_config(base, study._ours("tau3", regions={"tau": 3}))
    what = {"kind": "ours", "budget": "steps", "steps": 9, "observe_every": 3}
    assert tau3.regions.tau == 3 and tau3.style == center.style
    keys = {
        study.run_key(center, what, 0),
        study.run_key(center, what, 1),
        study.run_key(tau3, what, 0),
        study.run_key(center, {**what, "budget": "epochs"}, 0),
    }
    assert len(keys) == 4
    assert study.run_key(center, dict(reversed(what.items())), 0) == study.run_key(center, what, 0)


def test_t_interval_and_the_seed_count_rule() -> None:
    x = [1.0, 2.0, 4.0, 3.0]
    mean, lo, hi = study.t_interval(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert (mean, lo, hi) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert math.isnan(study.t_interval([1.0])[1])
    n = study.seeds_needed(3.0, 2.0)
    assert n == 20  # ((t.975 + t.80)(n-1) * 3 / 2)^2 <= n first at 20 (the z rule gives 17.7)
    assert study.detectable(3.0, n) <= 2.0 < study.detectable(3.0, n - 1)
    assert study.seeds_needed(1.5, 2.0) < n


def test_nuclei_classes_tiles_and_split() -> None:
    inst = np.zeros((8, 16), np.int64)
    inst[2:6, 2:6] = 1  # one 4 x 4 nucleus touching a second one
    inst[2:6, 6:9] = 2
    sem = nuclei.semantic_from_instances(inst)
    assert sem[0, 0] == 0 and sem[3, 3] == 1  # background, interior
    assert sem[2, 2] == 2 and sem[3, 5] == 2 and sem[3, 6] == 2  # outer ring and the contact line
    assert set(np.unique(sem[inst == 0])) == {0}
    image = np.arange(8 * 16, dtype=np.uint16).reshape(8, 16)
    arrays = nuclei.nuclei_arrays(image, inst, tile=4)
    assert arrays["train_images"].shape == arrays["test_masks"].shape == (4, 4, 4)
    assert arrays["train_images"].dtype == np.uint8 and list(arrays["classes"]) == list(nuclei.CLASSES)
    np.testing.assert_array_equal(arrays["test_masks"][0], sem[0:4, 8:12])  # right half, row-major
    np.testing.assert_array_equal(arrays["train_masks"][1], sem[0:4, 4:8])
    with pytest.raises(ValueError, match="tile"):
        nuclei.nuclei_arrays(image, inst, tile=16)
