"""Resuming: a run killed with SIGKILL mid-run continues where it stopped, with nothing duplicated, and
ends with the same results as an uninterrupted run; the process pool gives the same results as one process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetting.experiments import ResultStore, expand_grid, load_config, run_experiments
from tiny_run import tiny_toml

TINY = tiny_toml(
    seeds=[0],
    strategy=["random", "switch"],
    eval_sets=["test", "digits"],
    al={"query_size": 10, "rounds": 3},
    train={"lr": 3e-3, "batch_size": 32},
    data={"train_limit": 200, "eval_limit": 100},
)
ROUNDS = 4  # rounds = 3 queries -> 4 trained models
QUERY = 10

# Runs the real CLI, but each round takes 0.5 s longer before it is stored, so that the test can kill the
# run while a round is in progress (computed, not yet stored: that round is lost and must be redone).
DRIVER = textwrap.dedent(
    """
    import sys, time
    import forgetting.loop as loop

    original = loop.run_active_learning

    def slow(*args, on_round=None, **kwargs):
        def wait_then_store(record):
            time.sleep(0.5)
            on_round(record)
        return original(*args, on_round=wait_then_store, **kwargs)

    loop.run_active_learning = slow
    from forgetting.cli import main
    sys.argv = ["forgetting", "run", sys.argv[1], "--out", sys.argv[2], "--no-report"]
    main()
    """
)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed subprocess uses one thread too: bitwise-equal training
    yield
    torch.set_num_threads(before)


def _count_rounds(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1.0) as con:
            return int(con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _results(run_dir: Path) -> dict[str, list[tuple[list[int], float, int]]]:
    """Per experiment id: (queried indices, test accuracy, n_labeled) of each round."""
    with ResultStore(run_dir) as store:
        return {
            row.id: [
                (r.query_indices.tolist(), r.metrics["test"]["accuracy"], r.n_labeled)
                for r in store.load_rounds(row.id, arrays=False)
            ]
            for row in store.experiments()
        }


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, one_thread):
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(cfg_path), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while _count_rounds(out / "results.sqlite") < 1:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no round was stored within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stored_before = _count_rounds(out / "results.sqlite")
    assert 1 <= stored_before < 2 * ROUNDS

    cfg = load_config(cfg_path)
    summary = run_experiments(cfg, out, progress=False, fail_fast=True)
    assert summary.ok and summary.rounds_written == 2 * ROUNDS - stored_before

    with ResultStore(out) as store:
        con = store._conn
        for row in store.experiments():
            assert row.status == "done"
            counts = dict(
                con.execute(
                    "SELECT round, COUNT(*) FROM rounds WHERE experiment_id = ? GROUP BY round", (row.id,)
                )
            )
            assert counts == {r: 1 for r in range(ROUNDS)}, counts
            q = [
                r[0]
                for r in con.execute("SELECT sample_index FROM queries WHERE experiment_id = ?", (row.id,))
            ]
            assert len(q) == (ROUNDS - 1) * QUERY and len(set(q)) == len(q)
            n_metric_rows = con.execute("SELECT COUNT(*) FROM metrics WHERE experiment_id = ?", (row.id,))
            assert n_metric_rows.fetchone()[0] == ROUNDS * 2 * 3  # rounds x eval sets x (accuracy, nll, ece)

    # A rerun of a finished run does nothing.
    again = run_experiments(cfg, out, progress=False, fail_fast=True)
    assert again.rounds_written == 0 and sorted(again.skipped) == sorted(s.id for s in expand_grid(cfg))

    # The resumed run equals an uninterrupted one: same queries, same accuracies, round by round.
    fresh = tmp_path / "fresh"
    run_experiments(cfg, fresh, progress=False, fail_fast=True)
    resumed, uninterrupted = _results(out), _results(fresh)
    assert resumed.keys() == uninterrupted.keys()
    for exp_id, rounds in uninterrupted.items():
        assert resumed[exp_id] == rounds
        assert [n for _, _, n in rounds] == [10 + QUERY * r for r in range(ROUNDS)]


def test_failed_experiment_is_recorded_and_others_continue(tmp_path):
    cfg = load_config_text(tmp_path, TINY)
    good, _ = expand_grid(cfg)
    bad = good.model_copy(update={"al": good.al.model_copy(update={"initial_size": 1000})})  # > 200 samples
    # check=False: the pre-flight check would refuse `bad` before running anything (test_hardening.py);
    # here the run-time failure of one experiment is what is tested
    summary = run_experiments([bad, good], tmp_path / "run", progress=False, check=False)
    assert list(summary.failed) == [bad.id] and "initial_size=1000" in summary.failed[bad.id]
    assert summary.finished == [good.id]
    with ResultStore(tmp_path / "run") as store:
        status = {r.id: (r.status, r.error) for r in store.experiments()}
    assert status[good.id] == ("done", None)
    assert status[bad.id][0] == "failed" and "PoolExhaustedError" in status[bad.id][1]
    with pytest.raises(Exception, match="initial_size=1000"):
        run_experiments([bad], tmp_path / "run", progress=False, fail_fast=True, check=False)


def load_config_text(tmp_path: Path, text: str):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return load_config(path)


def test_process_pool_matches_one_process(tmp_path, one_thread):
    cfg = load_config_text(
        tmp_path,
        tiny_toml(
            strategy=["random", "switch"],
            eval_sets=["test", "digits"],
            al={"query_size": 10, "rounds": 3},
            train={"lr": 3e-3, "batch_size": 32},
            data={"train_limit": 200, "eval_limit": 100},
        ),
    )
    specs = expand_grid(cfg)
    bad = specs[0].model_copy(update={"al": specs[0].al.model_copy(update={"initial_size": 1000})})
    serial = run_experiments(cfg, tmp_path / "serial", progress=False, fail_fast=True)
    pooled = run_experiments([bad, *specs], tmp_path / "pool", jobs=2, progress=False, threads=1, check=False)
    assert serial.ok
    assert list(pooled.failed) == [bad.id] and "PoolExhaustedError" in pooled.failed[bad.id]
    assert sorted(pooled.finished) == sorted(serial.finished) and pooled.rounds_written == 4 * ROUNDS
    a, b = _results(tmp_path / "serial"), _results(tmp_path / "pool")
    assert b.pop(bad.id) == []
    assert a.keys() == b.keys()
    for exp_id in a:
        assert [q for q, _, _ in a[exp_id]] == [q for q, _, _ in b[exp_id]]
        np.testing.assert_allclose(
            [acc for _, acc, _ in a[exp_id]], [acc for _, acc, _ in b[exp_id]], atol=0.02
        )
    with ResultStore(tmp_path / "pool") as store:
        status = {r.id: r.status for r in store.experiments()}
    assert status.pop(bad.id) == "failed" and set(status.values()) == {"done"}
