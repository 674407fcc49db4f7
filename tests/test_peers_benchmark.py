"""The library-independent parts of the peer benchmark (benchmarks/peers/, issue 11).

baal and scikit-activeml are not project dependencies: these tests load the benchmark's files by path and
run without them (the peer code imports them lazily).
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

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def protocol() -> ModuleType:
    return _load("peers_protocol_under_test", PEERS / "protocol.py")


def _run(
    p: ModuleType, library: str, strategy: str, seed: int, train: float, score: float, acc: float
) -> dict:
    """A stored run of 3 rounds (20, 40, 60 labels) with per-round phase seconds and flat accuracies."""
    rounds = []
    for rnd in range(3):
        metrics = {
            "test": {"accuracy": acc + 0.1 * rnd, "nll": 1.0, "ece": 0.1},
            "digits": {"accuracy": acc / 2, "nll": 2.0, "ece": 0.2},
            "contrast-3": {"accuracy": acc / 4, "nll": 3.0, "ece": 0.3},
        }
        seconds = {"train": train / 3, "score": score / 2 if rnd < 2 else 0.0, "select": 0.0}
        rounds.append(
            {
                "round": rnd,
                "n_labeled": 20 * (rnd + 1),
                "seconds": seconds,
                "cpu_seconds": seconds,
                "metrics": metrics,
                "query": [],
            }
        )
    return {
        "dataset": "mnist-5k",
        "seed": seed,
        "library": library,
        "strategy": strategy,
        "fingerprint": "abc",
        "rounds": rounds,
        "wall_seconds": train + score,
    }


def test_aubc_of_known_curves(protocol: ModuleType) -> None:
    # Trapezoids (0.5+0.7)/2*20 + (0.7+0.9)/2*20 = 28 over a label range of 40.
    assert protocol.aubc([20, 40, 60], [0.5, 0.7, 0.9]) == pytest.approx(0.7)
    assert protocol.aubc([20, 60], [0.4, 0.4]) == pytest.approx(0.4)
    assert protocol.aubc([20], [0.3]) == pytest.approx(0.3)
    assert math.isnan(protocol.aubc([], []))
    assert math.isnan(protocol.aubc([20, 40], [0.5, float("nan")]))
    with pytest.raises(ValueError):
        protocol.aubc([20, 40], [0.5])


def test_every_library_gets_the_same_initial_set(protocol: ModuleType) -> None:
    targets = np.repeat(np.arange(10), 50)
    a = protocol.initial_labeled(targets, 20, seed=0)
    b = protocol.initial_labeled(targets.copy(), 20, seed=0)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and a.size == 20 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(np.bincount(targets[a], minlength=10), np.full(10, 2))  # stratified
    assert not np.array_equal(a, protocol.initial_labeled(targets, 20, seed=1))
    # Per-round seeds: one per (seed, round, purpose), the same on every call.
    assert protocol.round_seed(0, 3, protocol.MODEL) == protocol.round_seed(0, 3, protocol.MODEL)
    assert (
        len({protocol.round_seed(0, r, p) for r in range(3) for p in (protocol.MODEL, protocol.TRAIN)}) == 6
    )


def test_plan_follows_the_issue_matrix(protocol: ModuleType) -> None:
    plan = protocol.jobs({"mnist-5k": (0, 1), "fashion-mnist": (0,)})
    assert len(plan) == 3 * 13  # 3 (dataset, seed) x (3 + 2 + 2 + 2 + 2 + 2) runs
    by_strategy = {(j["strategy"], j["library"]) for j in plan}
    assert ("bald", "baal") in by_strategy and ("badge", "scikit-activeml") in by_strategy
    assert ("bald", "scikit-activeml") not in by_strategy and ("coreset", "baal") not in by_strategy
    # The libraries of one (dataset, seed, strategy) are adjacent, ours first.
    assert [j["library"] for j in plan[:3]] == ["forgetting", "baal", "scikit-activeml"]
    assert {j["strategy"] for j in plan[:3]} == {"random"}
    only = protocol.jobs({"mnist-5k": (0,)}, strategies=["margin"])
    assert [(j["library"], j["strategy"]) for j in only] == [("forgetting", "margin"), ("baal", "margin")]
    assert protocol.run_key(only[1]) == "mnist-5k|0|baal|margin"


def test_runs_round_trip_and_resume(protocol: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    assert protocol.load_runs(path) == {}
    first = _run(protocol, "baal", "bald", 0, 4.0, 8.0, 0.5)
    protocol.append_run(path, first)
    with path.open("a") as f:
        f.write('{"dataset": "mnist-5k", "seed"')  # a run cut short by a kill
        f.write("\n")
    protocol.append_run(path, {**_run(protocol, "forgetting", "bald", 0, 4.0, 1.0, 0.6), "fingerprint": "x"})
    runs = protocol.load_runs(path, "abc")
    assert list(runs) == ["mnist-5k|0|baal|bald"]
    assert runs["mnist-5k|0|baal|bald"]["rounds"] == json.loads(json.dumps(first))["rounds"]
    assert len(protocol.load_runs(path)) == 2
    # The protocol fingerprint changes with any setting.
    p = protocol.Protocol()
    assert p.fingerprint() == protocol.Protocol().fingerprint()
    assert p.fingerprint() != protocol.Protocol(epochs=p.epochs + 1).fingerprint()
    assert p.budget == p.initial_size + p.rounds * p.query_size


def test_aggregation_ratios_and_tables(protocol: ModuleType) -> None:
    runs = [
        _run(protocol, "forgetting", "bald", 0, train=3.0, score=1.0, acc=0.5),
        _run(protocol, "forgetting", "bald", 1, train=3.0, score=1.0, acc=0.7),
        _run(protocol, "baal", "bald", 0, train=6.0, score=4.0, acc=0.4),
        _run(protocol, "baal", "bald", 1, train=6.0, score=4.0, acc=0.4),
        _run(protocol, "forgetting", "random", 0, train=2.0, score=0.0, acc=0.5),
        _run(protocol, "scikit-activeml", "random", 0, train=4.0, score=0.0, acc=0.5),
    ]
    groups = protocol.aggregate(runs)
    assert [(g.strategy, g.library) for g in groups] == [
        ("random", "forgetting"),
        ("random", "scikit-activeml"),
        ("bald", "forgetting"),
        ("bald", "baal"),
    ]
    ours_bald = groups[2]
    assert ours_bald.seeds == [0, 1]
    # AUBC of test 0.5, 0.6, 0.7 (seed 0) and 0.7, 0.8, 0.9 (seed 1); mean OOD = (acc/2 + acc/4)/2.
    assert ours_bald.values("aubc", "test") == pytest.approx([0.6, 0.8])
    assert ours_bald.values("final", protocol.MEAN_OOD) == pytest.approx([0.1875, 0.2625])
    assert ours_bald.mean_seconds("total") == pytest.approx(4.0)
    assert protocol.time_ratio(3.0, 6.0) == pytest.approx(0.5)
    assert math.isnan(protocol.time_ratio(1.0, 0.0))
    assert protocol.fmt_ratio(float("nan")) == "–"
    assert protocol.mean_std([0.6, 0.8]) == "70.0 ± 14.1"
    assert protocol.mean_std([0.5]) == "50.0 ± 0.0"

    timing = protocol.timing_table(groups)
    baal_row = next(line for line in timing.splitlines() if line.startswith("| bald | baal |"))
    # train 3/6, score 1/4, select undefined (0 s), total 4/10, CPU total 4/10.
    assert baal_row.split("|")[3:12] == [
        " 6.0 ",
        " 4.0 ",
        " 0.0 ",
        " 10.0 ",
        " 0.50× ",
        " 0.25× ",
        " – ",
        " 0.40× ",
        " 0.40× ",
    ]
    ours_row = next(line for line in timing.splitlines() if line.startswith("| bald | forgetting |"))
    assert ours_row.count("–") == 5
    assert "| random | scikit-activeml | 4.0 | 0.0 | 0.0 | 4.0 | 0.50× |" in timing

    accuracy = protocol.accuracy_table(groups)
    assert "AUBC digits" in accuracy and "AUBC contrast-3" in accuracy
    assert "| bald | forgetting | 2 | 70.0 ± 14.1 |" in accuracy
    per_round = protocol.per_round_table(groups)
    assert per_round.splitlines()[0] == "| strategy | library | 20 | 40 | 60 |"
    assert "| bald | baal | 40.0 / 15.0 | 50.0 / 15.0 | 60.0 / 15.0 |" in per_round

    micro = {
        "dataset": "mnist-5k",
        "labels": 60,
        "pool": 100,
        "mc_samples": 20,
        "batch": 64,
        "rows": [
            {"phase": "MC", "library": "forgetting", "method": "head", "seconds": [0.5, 0.7, 0.6]},
            {"phase": "MC", "library": "baal", "method": "full", "seconds": [6.0, 5.0]},
        ],
    }
    text = protocol.results_markdown(
        runs, protocol.Protocol(), meta={"torch": "2.x"}, eval_sets={"mnist-5k": ["digits"]}, micro=micro
    )
    assert text.startswith("# forgetting vs baal vs scikit-activeml")
    assert "## Fairness rules" in text and "Same initial labeled set" in text
    assert "## mnist-5k" in text and "- torch: 2.x" in text
    assert "| MC | baal | `full` | 2 | 5.50 | 5.00 | 9.17× |" in text
    assert "| MC | forgetting | `head` | 3 | 0.60 | 0.50 | 1.00× |" in text


def test_run_script_imports_without_the_peers() -> None:
    run = _load("peers_run_under_test", PEERS / "run.py")
    args = run.build_parser().parse_args(["--quick", "--datasets", "mnist-5k:0,2", "fashion-mnist"])
    assert args.quick and args.jobs == 1
    assert run.parse_plan(args.datasets, [0, 1, 2]) == {"mnist-5k": (0, 2), "fashion-mnist": (0, 1, 2)}
    clock = run.Clock()
    with clock.phase("query"), clock.phase("score"):
        pass
    assert set(clock.phases()) == {"train", "score", "select"} and clock.phases()["select"] >= 0.0
    if importlib.util.find_spec("baal") is None:
        assert "baal" not in sys.modules
        with pytest.raises(SystemExit, match="make bench-peers"):
            run.check_peers({"baal"})
