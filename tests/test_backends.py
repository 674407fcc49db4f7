"""Backends: local, process pool and Ray give the same results; Ray retries failed tasks and resumes runs
without duplicating rounds; Ctrl-C leaves a resumable directory; data placement on the device.

Ray is a test dependency (CI installs ``forgetting[ray]``): a missing Ray fails these tests, except the one
that checks the error message for a missing Ray.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.devices import data_device, fits_on_device
from forgetting.exceptions import ConfigError, MissingDependencyError
from forgetting.experiments import ResultStore, expand_grid, parse_config, run_experiments
from forgetting.experiments import driver as driver_mod
from forgetting.experiments.config import RaySettings
from forgetting.experiments.runner import resolve_backend
from forgetting.records import RoundRecord, TrainRecord
from round_hooks import RAY_RUNTIME_ENV, FailOnce
from tiny_run import tiny_toml

TINY = tiny_toml(name="backends-tiny", ray={"num_cpus": 1, "max_retries": 1})
N_EXPERIMENTS = 4
ROUNDS = 3  # 2 queries -> 3 trained models


@pytest.fixture(scope="module")
def cfg():
    return parse_config(TINY)


@pytest.fixture(scope="module")
def small(cfg):
    """The seed-0 half of the grid (2 experiments, run side by side on the 2 CPUs of the Ray instance)."""
    return cfg.model_copy(update={"seeds": [0]})


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs for the whole module; the backend reuses the connection."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fail_once(tmp_path_factory):
    """Ray settings whose workers can import the test hooks, a FailOnce hook (each experiment raises once
    after a round, then dies once after a later round) and its two marker directories, emptied for each
    test. One runtime env for the module, so that Ray reuses its workers."""
    raised, crashed = tmp_path_factory.mktemp("raised"), tmp_path_factory.mktemp("crashed")

    def arm(max_retries: int) -> RaySettings:
        for marker in [*raised.iterdir(), *crashed.iterdir()]:
            marker.unlink()
        return RaySettings(num_cpus=1, max_retries=max_retries, runtime_env=RAY_RUNTIME_ENV)

    return arm, FailOnce(raised, crashed), raised, crashed


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # pool workers and Ray tasks use one thread too: bitwise-equal training
    yield
    torch.set_num_threads(before)


def _check_complete(run_dir: Path, n_experiments: int = N_EXPERIMENTS) -> None:
    """Every experiment done, each round stored exactly once, no sample queried twice."""
    with sqlite3.connect(run_dir / "results.sqlite") as con:
        statuses = [r[0] for r in con.execute("SELECT status FROM experiments")]
        assert statuses == ["done"] * n_experiments
        per_round = con.execute("SELECT experiment_id, round, COUNT(*) FROM rounds GROUP BY 1, 2").fetchall()
        assert len(per_round) == n_experiments * ROUNDS and {c for _, _, c in per_round} == {1}
        dup = con.execute(
            "SELECT COUNT(*) FROM (SELECT experiment_id, sample_index FROM queries GROUP BY 1, 2 "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert dup == 0


@pytest.fixture(scope="module")
def reference(cfg, tmp_path_factory, queries_of):
    """The queries of the tiny grid run in this process, one experiment after the other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("local")
    try:
        summary = run_experiments(cfg, out, backend="local", progress=False, fail_fast=True)
    finally:
        torch.set_num_threads(before)
    assert summary.ok and summary.rounds_written == N_EXPERIMENTS * ROUNDS
    return queries_of(out)


def _ray(**kwargs) -> RaySettings:
    return RaySettings(num_cpus=1, **kwargs)


# --------------------------------------------------------------------------------------------------------
# Agreement


def test_backends_agree_on_the_queries(cfg, reference, ray_local, one_thread, tmp_path, queries_of):
    pooled = run_experiments(cfg, tmp_path / "process", backend="process", jobs=2, threads=1, progress=False)
    on_ray = run_experiments(cfg, tmp_path / "ray", backend="ray", progress=False, fail_fast=True)
    for summary in (pooled, on_ray):
        assert summary.ok and summary.rounds_written == N_EXPERIMENTS * ROUNDS
    ids = [s.id for s in expand_grid(cfg)]
    assert sorted(reference) == sorted(ids)
    assert all(len(rounds) == ROUNDS and rounds[-1] == [] for rounds in reference.values())
    assert queries_of(tmp_path / "process") == reference
    assert queries_of(tmp_path / "ray") == reference
    _check_complete(tmp_path / "ray")
    again = run_experiments(cfg, tmp_path / "ray", backend="ray", progress=False)
    assert again.rounds_written == 0 and sorted(again.skipped) == sorted(ids)


# --------------------------------------------------------------------------------------------------------
# Retry and resume under Ray


def test_ray_retries_failed_tasks_without_duplicates(
    small, reference, ray_local, fail_once, tmp_path, queries_of
):
    arm, hook, raised, crashed = fail_once
    # Each experiment raises after round 0, its retry dies after round 1, the second retry finishes.
    settings = arm(max_retries=2)
    summary = run_experiments(
        small,
        tmp_path / "run",
        backend="ray",
        ray_settings=settings,
        progress=False,
        fail_fast=True,
        round_hook=hook,
    )
    ids = [s.id for s in expand_grid(small)]
    assert sorted(p.name for p in raised.iterdir()) == sorted(ids)
    assert sorted(p.name for p in crashed.iterdir()) == sorted(ids)
    assert summary.ok and summary.rounds_written == len(ids) * ROUNDS
    _check_complete(tmp_path / "run", len(ids))
    assert queries_of(tmp_path / "run") == {i: reference[i] for i in ids}


def test_ray_failed_tasks_resume_on_rerun(small, reference, ray_local, fail_once, tmp_path, queries_of):
    arm, hook, _, crashed = fail_once
    out = tmp_path / "run"
    failed = run_experiments(
        small, out, backend="ray", ray_settings=arm(max_retries=0), progress=False, round_hook=hook
    )
    ids = [s.id for s in expand_grid(small)]
    assert sorted(failed.failed) == sorted(ids) and failed.finished == []
    assert all("InjectedFailure" in e for e in failed.failed.values())
    assert failed.rounds_written == len(ids)  # round 0 of each experiment reached the store
    assert not list(crashed.iterdir())  # no retry, so no second failure
    with ResultStore(out) as store:
        assert {(r.status, r.n_rounds) for r in store.experiments()} == {("failed", 1)}
    # Also lose the stored round of one experiment, as a kill before its first round would.
    with sqlite3.connect(out / "results.sqlite") as con:
        for table in ("queries", "metrics", "rounds"):
            con.execute(f"DELETE FROM {table} WHERE experiment_id = ?", (ids[0],))

    resumed = run_experiments(small, out, backend="ray", ray_settings=_ray(), progress=False, fail_fast=True)
    assert resumed.ok and resumed.rounds_written == len(ids) * ROUNDS - (len(ids) - 1)
    _check_complete(out, len(ids))
    assert queries_of(out) == {i: reference[i] for i in ids}


def test_ray_interrupt_leaves_a_resumable_directory(
    small, reference, ray_local, tmp_path, monkeypatch, queries_of
):
    out = tmp_path / "run"
    original = driver_mod.Driver.handle
    rounds_seen = []

    def ctrl_c_after_the_first_round(self, msg):
        original(self, msg)
        if msg[0] == "round":
            rounds_seen.append(msg[1])
            if len(rounds_seen) == 1:
                raise KeyboardInterrupt  # as if Ctrl-C arrived while the driver stored the first round

    monkeypatch.setattr(driver_mod.Driver, "handle", ctrl_c_after_the_first_round)
    with pytest.raises(KeyboardInterrupt):
        run_experiments(small, out, backend="ray", ray_settings=_ray(), progress=False)
    monkeypatch.undo()
    with ResultStore(out) as store:
        rows = store.experiments()
    assert 1 <= sum(r.n_rounds for r in rows) < 2 * ROUNDS
    assert {r.error for r in rows if r.status == "failed"} == {"interrupted"}
    assert [r.status for r in rows].count("failed") >= 1 and "done" not in [r.status for r in rows]

    resumed = run_experiments(small, out, backend="ray", ray_settings=_ray(), progress=False, fail_fast=True)
    assert resumed.ok and resumed.rounds_written == 2 * ROUNDS - sum(r.n_rounds for r in rows)
    _check_complete(out, 2)
    assert queries_of(out) == {r.id: reference[r.id] for r in rows}


# --------------------------------------------------------------------------------------------------------
# Choosing the backend, configuration, the missing-Ray message


def test_resolve_backend():
    assert resolve_backend(None, None) == "local"
    assert resolve_backend(None, 1) == "local"
    assert resolve_backend(None, 4) == "process"
    assert resolve_backend("ray", 4) == "ray"
    assert resolve_backend("local", 4) == "local"
    with pytest.raises(ConfigError, match="'dask' is not a backend; choose one of"):
        resolve_backend("dask", None)


def test_ray_table_is_validated():
    cfg = parse_config(
        'backend = "ray"\n[ray]\naddress = "auto"\nnum_cpus = 2\nnum_gpus = 0.25\nmax_retries = 0\n'
        "runtime_env = { env_vars = { A = '1' } }\n",
        validate_names=False,
    )
    assert cfg.backend == "ray" and cfg.ray.address == "auto" and cfg.ray.num_gpus == 0.25
    assert cfg.ray.num_cpus == 2.0 and cfg.ray.max_retries == 0
    assert cfg.ray.runtime_env == {"env_vars": {"A": "1"}}
    with pytest.raises(ConfigError, match=r"unknown key `ray.gpus`; allowed keys in \[ray\]: address, "):
        parse_config("[ray]\ngpus = 1\n", validate_names=False)
    with pytest.raises(ConfigError, match=r"`ray\.num_gpus` = -1"):
        parse_config("[ray]\nnum_gpus = -1\n", validate_names=False)
    with pytest.raises(ConfigError, match="backend"):
        parse_config('backend = "slurm"\n', validate_names=False)
    # Run settings: the backend does not change the experiments' ids.
    base = parse_config(TINY)
    moved = base.model_copy(update={"backend": "ray", "ray": RaySettings(num_gpus=1)})
    assert [s.id for s in expand_grid(base)] == [s.id for s in expand_grid(moved)]


def test_missing_ray_says_how_to_install_it(cfg, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'forgetting\[ray\]'"):
        run_experiments(cfg, tmp_path / "run", backend="ray", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written before the check
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY)
    args = ["run", str(cfg_path), "--backend", "ray", "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "pip install 'forgetting[ray]'" in result.output


def test_cli_passes_backend_and_address(tmp_path, monkeypatch):
    import forgetting.experiments as experiments

    seen = {}

    def fake_run(cfg, out_dir, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "run_experiments", fake_run)
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY)
    args = ["run", str(cfg_path), "--backend", "ray", "--address", "ray://head:10001", "-j", "3"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert seen["backend"] == "ray" and seen["address"] == "ray://head:10001" and seen["jobs"] == 3
    assert result.exit_code == 130 and "rerun the same command to resume" in result.output


# --------------------------------------------------------------------------------------------------------
# Devices: the data stays on the device when it fits


def test_data_stays_on_the_device_only_when_it_fits(monkeypatch):
    cpu = torch.device("cpu")
    assert fits_on_device(10**15, cpu)  # the CPU holds what the host holds
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 4000))
    assert fits_on_device(500, cuda) and not fits_on_device(501, cuda)
    assert fits_on_device(900, cuda, fraction=0.9)
    small, big = torch.zeros(100, dtype=torch.uint8), torch.zeros(600, dtype=torch.uint8)
    assert data_device([small, small], cuda) == cuda
    assert data_device([small, big], cuda) == cpu


# --------------------------------------------------------------------------------------------------------
# The driver side shared by the process and ray backends


def _record(round_: int, query: list[int], accuracy: float = 0.5) -> RoundRecord:
    return RoundRecord(
        round=round_,
        n_labeled=10 + 5 * round_,
        train=TrainRecord(epochs=1, steps=1, seconds=0.1, track_seconds=0.0, train_accuracy=1.0),
        seconds={"train": 0.1},
        metrics={"test": {"accuracy": accuracy}},
        query_indices=np.array(query, dtype=np.int64),
        query_scores=np.full(len(query), np.nan),
    )


def test_driver_never_stores_a_round_after_a_gap_or_a_contradiction(cfg, tmp_path):
    first, second, *_ = expand_grid(cfg)
    with ResultStore(tmp_path) as store:
        for spec in (first, second):
            store.add_experiment(spec)
        summary = driver_mod.RunSummary(out_dir=tmp_path, experiment_ids=[first.id, second.id])
        with driver_mod.Display(False, None, 6) as display:
            driver = driver_mod.Driver(store, display, summary, [(first, []), (second, [])])
            driver.handle(("round", first.id, _record(0, [1, 2])))
            driver.handle(("round", first.id, _record(2, [])))  # round 1 was lost on the way
            driver.handle(("round", first.id, _record(0, [1, 2])))  # the same round again: a no-op
            driver.handle(("finished", first.id, 1.0))
            driver.handle(("round", second.id, _record(0, [3, 4])))
            driver.handle(("round", second.id, _record(0, [5, 6])))  # contradicts the stored round 0
            driver.handle(("round", second.id, _record(1, [7, 8])))  # ignored: the experiment failed
        rows = {r.id: r for r in store.experiments()}
    assert summary.rounds_written == 2 and driver.gaps == {first.id}
    assert (rows[first.id].status, rows[first.id].n_rounds) == ("failed", 1)
    assert "lost" in rows[first.id].error
    assert (rows[second.id].status, rows[second.id].n_rounds) == ("failed", 1)
    assert "DuplicateRoundError" in rows[second.id].error
