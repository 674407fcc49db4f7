"""The SQLite results store: round trip, duplicates, atomic arrays, tables."""

from __future__ import annotations

import csv
import math
import sqlite3

import numpy as np
import pytest

from forgetting.exceptions import ForgettingError
from forgetting.experiments.config import ExperimentSpec
from forgetting.experiments.store import DuplicateRoundError, ResultStore, records_equal
from forgetting.records import RoundRecord, TrainRecord


def make_spec(strategy: str = "switch", seed: int = 0, rounds: int = 3, **kw: object) -> ExperimentSpec:
    return ExperimentSpec(
        name="unit", dataset="mnist-5k", model="small-cnn", strategy=strategy, seed=seed,
        eval_sets=("test", "digits"), al={"rounds": rounds, "query_size": 4}, **kw,
    )  # fmt: skip


def make_record(
    rnd: int,
    *,
    query: np.ndarray | None = None,
    n_query: int = 4,
    dynamics: bool = True,
    acc: float | None = None,
    last: bool = False,
    seed: int = 0,
) -> RoundRecord:
    """A plausible round: disjoint queries per round (indices ``100*rnd + k``), metrics, dynamics."""
    rng = np.random.default_rng([seed, rnd])
    if query is None:
        query = np.zeros(0, dtype=np.int64) if last else (100 * rnd + np.arange(n_query)).astype(np.int64)
    scores = rng.random(query.size)
    if query.size:
        scores[0] = np.nan  # a strategy without a score for some sample
    pool = np.arange(1000, 1050, dtype=np.int64)
    a = float(rng.uniform(0.5, 0.9)) if acc is None else acc
    return RoundRecord(
        round=rnd,
        n_labeled=10 + 4 * rnd,
        train=TrainRecord(
            epochs=5 + rnd,
            steps=7 + rnd,
            seconds=0.25 + rnd,
            track_seconds=0.125,
            train_accuracy=0.9375,
            reached_target=rnd % 2 == 0,
        ),
        seconds={"train": 0.25 + rnd, "track": 0.125, "query": 0.0625, "eval": 0.03125},
        metrics={
            "test": {"accuracy": a, "nll": 1.5, "ece": float("nan")},
            "digits": {"accuracy": a - 0.2, "nll": 2.5, "ece": 0.1},
        },
        query_indices=query,
        query_scores=scores,
        dynamics={
            "switches": rng.integers(0, 12, size=pool.size).astype(np.int16),
            "observations": np.full(pool.size, 6, dtype=np.int32),
        }
        if dynamics
        else {},
        pool_indices=pool if dynamics else np.zeros(0, dtype=np.int64),
    )


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "run") as s:
        yield s


def test_round_trip_equal(store, tmp_path):
    spec = make_spec()
    assert store.add_experiment(spec) is True
    written = [
        make_record(0),
        make_record(1, dynamics=False),
        make_record(2),
        make_record(3, last=True, dynamics=False),
    ]
    for rec in written:
        assert store.write_round(spec.id, rec) is True
    loaded = store.load_rounds(spec.id)
    assert [r.round for r in loaded] == [0, 1, 2, 3]
    for a, b in zip(written, loaded, strict=True):
        assert records_equal(a, b)
        np.testing.assert_array_equal(a.query_indices, b.query_indices)
        np.testing.assert_array_equal(a.query_scores, b.query_scores)  # NaN positions included
        assert b.query_indices.dtype == np.int64 and b.query_scores.dtype == np.float64
        assert b.train == a.train
        assert b.seconds == a.seconds
        assert set(b.dynamics) == set(a.dynamics)
        for k in a.dynamics:
            assert b.dynamics[k].dtype == a.dynamics[k].dtype
            np.testing.assert_array_equal(a.dynamics[k], b.dynamics[k])
        np.testing.assert_array_equal(a.pool_indices, b.pool_indices)
        assert math.isnan(b.metrics["test"]["ece"]) and b.metrics["digits"] == a.metrics["digits"]
    # Arrays beside the database, referenced by relative path; no temporary files left behind.
    files = sorted(p.name for p in (tmp_path / "run" / "arrays" / spec.id).iterdir())
    assert files == ["round-000.npz", "round-002.npz"]
    arrays = [r[0] for r in store._conn.execute("SELECT arrays FROM rounds ORDER BY round")]
    assert arrays == [f"arrays/{spec.id}/round-000.npz", None, f"arrays/{spec.id}/round-002.npz", None]
    # Without arrays (what resuming needs): same rounds and queries, no dynamics.
    light = store.load_rounds(spec.id, arrays=False)
    assert [r.dynamics for r in light] == [{}] * 4
    np.testing.assert_array_equal(light[2].query_indices, written[2].query_indices)


def test_reopen_persists_and_uses_wal(tmp_path):
    spec = make_spec()
    with ResultStore(tmp_path) as s:
        s.add_experiment(spec)
        s.write_round(spec.id, make_record(0))
    with ResultStore(tmp_path / "results.sqlite") as s:
        assert s.add_experiment(spec) is False  # idempotent registration
        assert [r.round for r in s.load_rounds(spec.id)] == [0]
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = s.experiment(spec.id)
        assert row.spec == spec and row.spec.id == spec.id and row.n_rounds == 1 and row.status == "running"


def test_duplicate_round_identical_is_noop_different_is_error(store):
    spec = make_spec()
    store.add_experiment(spec)
    rec = make_record(0)
    assert store.write_round(spec.id, rec) is True
    assert store.write_round(spec.id, make_record(0)) is False  # identical contents: no-op
    changed = make_record(0, acc=0.123)
    with pytest.raises(DuplicateRoundError, match="round 0"):
        store.write_round(spec.id, changed)
    counts = [
        store._conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("rounds", "queries", "metrics")
    ]
    assert counts == [1, 4, 6]


def test_requery_of_a_sample_is_rejected_atomically(store):
    spec = make_spec()
    store.add_experiment(spec)
    store.write_round(spec.id, make_record(0))
    again = make_record(1, query=np.array([500, 2, 501], dtype=np.int64))  # 2 was queried in round 0
    with pytest.raises(DuplicateRoundError, match="queried at most once"):
        store.write_round(spec.id, again)
    # The failed round left nothing: no round row, no metrics, no queries.
    assert [r.round for r in store.load_rounds(spec.id)] == [0]
    assert store._conn.execute("SELECT COUNT(*) FROM queries WHERE round = 1").fetchone()[0] == 0
    assert store._conn.execute("SELECT COUNT(*) FROM metrics WHERE round = 1").fetchone()[0] == 0


def test_status_transitions_and_seconds(store):
    a, b = make_spec(seed=0), make_spec(seed=1)
    store.add_experiment(a)
    store.add_experiment(b)
    assert [r.status for r in store.experiments()] == ["pending", "pending"]
    store.mark_started(a.id)
    store.mark_failed(a.id, "RuntimeError: boom", 2.0)
    store.mark_started(a.id)
    store.mark_done(a.id, 3.0)
    row = store.experiment(a.id)
    assert (row.status, row.seconds, row.error) == ("done", 5.0, None)
    assert row.started is not None and row.finished is not None
    with pytest.raises(KeyError):
        store.mark_done("nope")


def test_metrics_frame_and_csv(store, tmp_path):
    s0, s1 = make_spec(seed=0), make_spec(strategy="random", seed=1)
    for spec in (s0, s1):
        store.add_experiment(spec)
        for r in range(2):
            store.write_round(spec.id, make_record(r, seed=spec.seed))
    frame = store.metrics_frame()
    assert len(frame) == 2 * 2 * 6
    first = frame[0]
    assert set(first) == {
        "experiment_id", "dataset", "model", "strategy", "variant", "seed", "round", "n_labeled",
        "eval_set", "metric", "value",
    }  # fmt: skip
    acc = {(r["experiment_id"], r["round"]): r["value"] for r in frame if r["eval_set"] == "test"
           and r["metric"] == "accuracy"}  # fmt: skip
    for spec in (s0, s1):
        for rec in store.load_rounds(spec.id):
            assert acc[(spec.id, rec.round)] == rec.metrics["test"]["accuracy"]
            key = (spec.id, rec.round)
            n_labeled = {r["n_labeled"] for r in frame if (r["experiment_id"], r["round"]) == key}
            assert n_labeled == {rec.n_labeled}
    path = store.export_csv(tmp_path / "out" / "metrics.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(frame)
    for row, ref in zip(rows, frame, strict=True):
        v = float(row["value"])
        assert (math.isnan(v) and math.isnan(ref["value"])) or v == ref["value"]
        assert row["strategy"] == ref["strategy"] and int(row["round"]) == ref["round"]


def test_schema_version_mismatch_is_reported(tmp_path):
    with ResultStore(tmp_path):
        pass
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ForgettingError, match="schema version 0"):
        ResultStore(tmp_path)


def test_mismatched_query_shapes_rejected(store):
    spec = make_spec()
    store.add_experiment(spec)
    rec = make_record(0)
    rec.query_scores = rec.query_scores[:2]
    with pytest.raises(ValueError, match="query_scores"):
        store.write_round(spec.id, rec)
