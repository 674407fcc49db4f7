"""Issue 19, hardening: one regression test per probed defect, and for the same classes of defect elsewhere.

1 lock on a run directory (two real processes, SIGKILL takeover) · 2 diverged models · 3 16-bit and float
images · 4 huge seeds, non-UTF-8 configs · 5 pre-flight checks, stale experiments · 6 pool exhaustion · 7 bad
--out · 8 damaged stores (real truncated and garbled files) · 9 malformed label files · 10 decompression
bombs · 11 CSV formula injection · 12 EventTracker named errors · 13 --round lists the valid rounds ·
14 gauss_select on huge values · 15 cosmetics.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from forgetting import EventTracker, LabelImportError, ProjectError
from forgetting._csv import FORMULA_PREFIXES, safe_cell, unquoted
from forgetting._io import atomic_savez, make_directory
from forgetting._lock import directory_lock, lock_holder
from forgetting.annotate import init_project, read_label_file, write_png
from forgetting.annotate.exporters import write_ranked_csv, write_segmentation_csv
from forgetting.annotate.importers import read_mask_file, read_mask_source
from forgetting.annotate.results import RankedItem
from forgetting.annotate.sources import ImageSource, MaskIndex
from forgetting.cli import app
from forgetting.data import load_dataset
from forgetting.data.dataset import Split
from forgetting.data.user_formats import read_image_files
from forgetting.evaluation import evaluate
from forgetting.exceptions import (
    ConfigError,
    DatasetFormatError,
    DirectoryInUseError,
    DivergedError,
    ForgettingError,
    StoreCorruptError,
)
from forgetting.experiments import ResultStore, expand_grid, parse_config, run_experiments, write_report
from forgetting.experiments.config import ExperimentSpec
from forgetting.loop import LoopConfig
from forgetting.models import build_model
from forgetting.strategies import gauss_select, load_scores_file
from forgetting.training import TrainConfig, fit
from round_hooks import FailOnce
from test_experiments_store import make_record
from tiny_run import tiny_toml

runner = CliRunner()

#: The tiny grid of these tests (examples/tiny.toml, one seed, one strategy).
HARDENING = {
    "seeds": [0],
    "strategy": ["random"],
    "al": {"query_size": 10},
    "train": {"epochs": 1, "batch_size": 32, "lr": 3e-3},
    "data": {"train_limit": 100, "eval_limit": 50},
}


def _tiny(**changes: object) -> str:
    """The hardening grid with ``changes`` (tables merged key by key), as TOML."""
    merged = {**HARDENING}
    for key, value in changes.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return tiny_toml(**merged)


TINY = _tiny()


def _out(result: object) -> str:
    """CLI output (stdout and stderr) with rich's line wrapping undone."""
    return " ".join(str(result.output).split())  # type: ignore[attr-defined]


def _config(tmp_path: Path, text: str = TINY, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run_cli(*args: str) -> object:
    return runner.invoke(app, ["run", *args], env={"COLUMNS": "300"})


def _rounds(run_dir: Path) -> int:
    db = run_dir / "results.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1.0) as con:
            return int(con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.fixture(scope="module")
def switch_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A finished run of random and switch (switch stores dynamics in arrays/<id>/round-*.npz): the run
    directory, its config, and strategy -> experiment id. Tests copy it before damaging anything."""
    base = tmp_path_factory.mktemp("switch-run")
    cfg = _config(base, _tiny(strategy=["random", "switch"]))
    summary = run_experiments(parse_config(cfg.read_text()), base / "run", progress=False, fail_fast=True)
    assert summary.ok
    with ResultStore(base / "run") as store:
        ids = {row.spec.strategy: row.id for row in store.experiments()}
    return base / "run", cfg, ids


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    shutil.rmtree(dest / "report", ignore_errors=True)
    return dest


# --------------------------------------------------------------------------------------------------------
# 1. One process per run directory: a second one exits 2 naming the holder; a killed holder's lock is taken
#    over. The labelling projects use the same lock.

SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    import forgetting.loop as loop

    original = loop.run_active_learning

    def slow(*args, on_round=None, **kwargs):
        def store_then_wait(record):
            on_round(record)
            time.sleep(120)  # holds the run directory until the test kills this process
        return original(*args, on_round=store_then_wait, **kwargs)

    loop.run_active_learning = slow
    from forgetting.cli import main
    sys.argv = ["forgetting", "run", sys.argv[1], "--out", sys.argv[2], "--no-report"]
    main()
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from forgetting._lock import directory_lock

    with directory_lock(sys.argv[1], what="a test holder"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def _start(tmp_path: Path, script: str, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    path = tmp_path / f"script-{abs(hash(script)) % 10**8}.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(path), *args], env=env, **kwargs)  # type: ignore[call-overload]


def test_second_run_on_a_directory_exits_2_naming_the_holder_and_a_killed_holder_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    holder = _start(tmp_path, SLOW_RUN, str(cfg), str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _rounds(out) < 1:  # round 0 stored: the holder now waits, holding the lock
            assert holder.poll() is None, holder.stderr.read().decode() if holder.stderr else ""
            assert time.monotonic() < deadline, "the first run stored no round within 120 s"
            time.sleep(0.05)
        assert lock_holder(out) is not None and lock_holder(out).pid == holder.pid  # type: ignore[union-attr]

        second = subprocess.run(
            [sys.executable, "-m", "forgetting", "run", str(cfg), "--out", str(out), "--no-report"],
            capture_output=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "300"},
        )
        text = " ".join(second.stderr.decode().split())
        assert second.returncode == 2, text
        assert f"PID {holder.pid}" in text and "in use by another forgetting process" in text
        assert holder.poll() is None  # it failed at once, while the first run still ran
        assert _rounds(out) == 1  # and it computed nothing

        # Reading is allowed while the run holds the directory: the report shows what is stored so far.
        page = write_report(out).read_text(encoding="utf-8")
        assert "running" in page and "1/3" in page
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert lock_holder(out).pid == holder.pid  # type: ignore[union-attr]  # the record outlives the process

    with caplog.at_level(logging.INFO, logger="forgetting"):
        summary = run_experiments(parse_config(cfg.read_text()), out, progress=False, fail_fast=True)
    assert f"taking over the lock left by PID {holder.pid}" in caplog.text
    assert summary.ok and summary.rounds_written == 2  # resumed after the stored round 0
    with ResultStore(out) as store:
        assert [(r.status, r.n_rounds) for r in store.experiments()] == [("done", 3)]
    assert lock_holder(out) is None  # released: nobody to name


def test_a_held_directory_refuses_runs_projects_and_maps_at_once(tmp_path: Path) -> None:
    images = tmp_path / "images"
    train = _mnist_train()
    for i in range(4):
        write_png(images / f"{i}.png", train.images[i])
    project = init_project(tmp_path / "proj", images, classes=["a", "b"], device="cpu")
    dirs = {"proj": project.root, "run": tmp_path / "run", "maps": tmp_path / "maps"}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    holders = [_start(tmp_path, HOLDER, str(d), stdout=subprocess.PIPE) for d in dirs.values()]
    try:
        for h in holders:
            assert h.stdout is not None and h.stdout.readline().strip() == b"locked"
        with pytest.raises(
            ProjectError, match=rf"in use by another forgetting process .*PID {holders[0].pid}"
        ):
            project.add_labels({"0.png": "a"})
        with pytest.raises(DirectoryInUseError, match=rf"PID {holders[1].pid}"):
            run_experiments(parse_config(TINY), dirs["run"], progress=False)
        from forgetting.segmentation import run_forgetting_maps

        t0 = time.perf_counter()
        with pytest.raises(DirectoryInUseError, match=rf"PID {holders[2].pid}"):
            run_forgetting_maps(out_dir=dirs["maps"])
        assert time.perf_counter() - t0 < 5  # refused before any data or training
    finally:
        for h in holders:
            h.kill()
            h.wait(timeout=30)
    assert project.add_labels({"0.png": "a"}).added == 1  # the killed holder's lock is taken over
    assert not (dirs["run"] / "results.sqlite").exists()


def test_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with directory_lock(tmp_path, what="outer"), directory_lock(tmp_path, what="inner") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert lock_holder(tmp_path) is None


# --------------------------------------------------------------------------------------------------------
# 2. Diverged models


def test_non_finite_settings_are_refused() -> None:
    for line in ("lr = inf", "lr = nan", "lr = [1e-3, inf]", "weight_decay = inf"):
        with pytest.raises(ConfigError, match=r"train\.(lr|weight_decay)"):
            parse_config(f"[train]\n{line}\n")
    with pytest.raises(ConfigError, match="finite"):
        parse_config(
            'dataset = "seismic-synthetic"\nmodel = "unet"\n[segmentation]\nclass_weights = [1.0, inf]\n'
        )
    for kwargs in ({"lr": math.inf}, {"lr": math.nan}, {"weight_decay": math.inf}, {"momentum": 1.0}):
        with pytest.raises(ConfigError, match="train"):
            TrainConfig(**kwargs)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def _mnist_train() -> Split:
    return load_dataset("mnist-5k", seed=0).train


def _digits(n: int) -> Split:
    train = _mnist_train()
    return Split(train.images[:n], train.targets[:n])


def test_fit_raises_diverged_error_naming_the_epoch_without_a_sync_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _digits(64)
    model = build_model("mlp", 1, 10, seed=0)
    with pytest.raises(
        DivergedError, match=r"diverged in epoch \d: .*NaN or inf.*lower the learning rate"
    ) as e:
        fit(model, data, TrainConfig(optimizer="sgd", lr=1e12, epochs=5, batch_size=16), seed=0)
    assert 1 <= e.value.epoch <= 5 and e.value.round is None
    assert "round 3, epoch" in str(e.value.in_round(3))

    # the divergence check reads a device flag at the epoch's sync: host reads do not grow with the batches
    reads = {"n": 0}
    for name in ("__bool__", "__float__", "__int__", "item"):
        original = getattr(torch.Tensor, name)

        def counting(self: torch.Tensor, *a: object, _original: object = original, **k: object) -> object:
            reads["n"] += 1
            return _original(self, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(torch.Tensor, name, counting)
    counts = []
    for batch_size in (32, 4):  # 2 and 16 batches per epoch
        reads["n"] = 0
        config = TrainConfig(optimizer="sgd", lr=0.01, epochs=2, batch_size=batch_size)
        fit(build_model("mlp", 1, 10, seed=0), data, config, seed=0)
        counts.append(reads["n"])
    monkeypatch.undo()
    assert counts[0] == counts[1], counts


def test_all_ignored_batches_are_not_divergence() -> None:
    data = _digits(64)
    targets = data.targets.clone()
    targets[:16] = 255  # with shuffled batches of 4, some batches are entirely ignored (NaN mean loss)
    record = fit(
        build_model("mlp", 1, 10, seed=0),
        Split(data.images, targets),
        TrainConfig(epochs=3, batch_size=4, schedule="plateau"),
        seed=0,
        ignore_index=255,
    )
    assert record.epochs == 3 and math.isfinite(record.train_accuracy)


def test_evaluate_a_nan_model_gives_nan_metrics_not_an_index_error() -> None:
    model = build_model("mlp", 1, 10, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)
    metrics = evaluate(model, _digits(32))
    assert math.isnan(metrics["nll"]) and math.isnan(metrics["ece"]) and 0 <= metrics["accuracy"] <= 1


def test_diverged_experiment_is_failed_with_round_epoch_and_advice_others_unaffected(tmp_path: Path) -> None:
    cfg = parse_config(_tiny(train={"lr": [3e-3, 1e12], "optimizer": "sgd"}))
    good, bad = expand_grid(cfg)
    summary = run_experiments(cfg, tmp_path / "run", progress=False)
    assert summary.finished == [good.id] and list(summary.failed) == [bad.id]
    error = summary.failed[bad.id]
    assert error.startswith("DivergedError: training diverged in round 0, epoch 1")
    assert "lower the learning rate (train.lr = 1e+12)" in error
    with ResultStore(tmp_path / "run") as store:
        rows = {r.id: r for r in store.experiments()}
    assert (rows[good.id].status, rows[good.id].n_rounds) == ("done", 3)
    assert rows[bad.id].status == "failed" and "diverged" in (rows[bad.id].error or "")


# --------------------------------------------------------------------------------------------------------
# 3. 16-bit and float images (labelling projects and the image-folder dataset): one documented rule


def test_16_bit_and_float_images_are_rescaled_and_bad_ones_refused(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    a16 = np.linspace(32, 65517, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(a16).save(folder / "a16.png")
    f01 = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    Image.fromarray(f01).save(folder / "f01.tif")
    u8 = (np.arange(256).reshape(16, 16)).astype(np.uint8)
    Image.fromarray(u8).save(folder / "u8.png")
    ids, images = ImageSource.from_path(folder).load()
    got = dict(zip(ids, images[:, 0].numpy(), strict=True))
    np.testing.assert_array_equal(got["a16.png"], np.rint(a16 * (255 / 65535)).astype(np.uint8))
    assert got["a16.png"].min() == 0 and got["a16.png"].max() == 255  # not a mean-254 clip
    np.testing.assert_array_equal(got["f01.tif"], np.rint(f01 * 255).astype(np.uint8))  # not all zeros
    np.testing.assert_array_equal(got["u8.png"], u8)

    Image.fromarray(f01 * 5).save(tmp_path / "f5.tif")
    with pytest.raises(DatasetFormatError, match=r"f5\.tif: a float image \(mode F, float32\) .*\[0, 1\]"):
        read_image_files([tmp_path / "f5.tif"])
    Image.fromarray((np.arange(256).reshape(16, 16) * 1000).astype(np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(DatasetFormatError, match=r"i32\.tif: a 32-bit integer image \(mode I, int32\)"):
        read_image_files([tmp_path / "i32.tif"])


# --------------------------------------------------------------------------------------------------------
# 4. Huge seeds and non-UTF-8 configs


def test_huge_seed_and_non_utf8_config_exit_2_and_write_nothing(tmp_path: Path) -> None:
    big = _config(tmp_path, _tiny(seeds=[99999999999999999999]), "big.toml")
    result = _run_cli(str(big), "--out", str(tmp_path / "big"))
    assert result.exit_code == 2 and "`seeds[0]` = 99999999999999999999" in _out(result)
    assert not (tmp_path / "big").exists()
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "café"\n'.encode("latin-1"))
    result = _run_cli(str(latin), "--out", str(tmp_path / "latin"))
    assert result.exit_code == 2 and "is not UTF-8 text" in _out(result)
    with pytest.raises(ConfigError, match=r"data\.seed"):
        parse_config("[data]\nseed = -1\n")
    with pytest.raises(ConfigError, match="seed must be a non-negative"):
        LoopConfig(seed=-1)


# --------------------------------------------------------------------------------------------------------
# 5. Pre-flight: validated before anything is written; stale experiments left out of the report


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"device": "gpu"}, "device: 'gpu' is not a device"),
        ({"dataset": "arrays", "data": {"root": "/nope"}}, "dataset 'arrays': /nope does not exist"),
        ({"eval_sets": ["test", "split:nope"]}, "has no split 'nope'"),
        ({"eval_sets": ["test", "stl10"]}, "dataset 'stl10' not found"),
        ({"al": {"initial_size": 500}}, "al.initial_size = 500 is larger than the 100"),
        ({"model": "unet"}, "model 'unet' is a segmentation model"),
    ],
)
def test_preflight_exits_2_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, object], message: str
) -> None:
    monkeypatch.setenv("FORGETTING_DATA", str(tmp_path / "no-data"))  # no stl10 here
    text = _tiny(**changes)
    result = _run_cli(str(_config(tmp_path, text)), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, _out(result)
    assert "the config cannot run" in _out(result) and "nothing was written" in _out(result)
    assert message in _out(result)
    assert not (tmp_path / "run").exists()


def test_segmentation_strategy_without_a_segmentation_form_is_refused_up_front(tmp_path: Path) -> None:
    cfg = parse_config(
        'dataset = "seismic-synthetic"\nmodel = "unet"\nstrategy = "badge"\ndevice = "cpu"\n'
        "[data.options]\ninlines = 12\ncrosslines = 12\ndepth = 24\n"
    )
    with pytest.raises(ConfigError, match="strategy 'badge' has no segmentation form"):
        run_experiments(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_stale_unfinished_experiments_are_left_out_of_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # the first config's experiment fails
    first = run_experiments(parse_config(TINY), out, progress=False, round_hook=FailOnce(raised=tmp_path))
    (stale_id,) = first.failed
    fixed = run_experiments(parse_config(_tiny(train={"lr": 1e-3})), out, progress=False)
    assert fixed.ok and stale_id not in fixed.experiment_ids
    page = write_report(out).read_text(encoding="utf-8")
    assert "Unfinished experiments" not in page
    assert "Left out: 1 unfinished experiment(s)" in page and stale_id in page
    assert "1 experiments: 1 done" in page


# --------------------------------------------------------------------------------------------------------
# 6. Pool exhaustion is visible


EXHAUSTING = _tiny(data={"train_limit": 40}, al={"rounds": 6})


def test_partial_pool_exhaustion_warns_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="forgetting"):
        result = _run_cli(str(_config(tmp_path, EXHAUSTING)), "--out", str(out))
    assert result.exit_code == 0, _out(result)
    assert "ended early" in _out(result) and "4 of 7 rounds" in _out(result)
    assert "the pool runs out" in caplog.text and "the pool ran out: round 3" in caplog.text
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Ended early (the pool ran out" in page and "4/7 rounds" in page


def test_on_exhausted_error_fails_the_experiment_with_a_named_error(tmp_path: Path) -> None:
    cfg = parse_config(EXHAUSTING.replace("[al]", '[al]\non_exhausted = "error"'))
    summary = run_experiments(cfg, tmp_path / "run", progress=False)
    ((_, error),) = summary.failed.items()
    assert error.startswith("PoolExhaustedError: initial_size 10 + rounds 6 x query_size 10 = 70 labels")
    assert "lower the rounds to 3" in error
    with ResultStore(tmp_path / "run") as store:
        assert [(r.status, r.n_rounds) for r in store.experiments()] == [("failed", 0)]  # failed up front


# --------------------------------------------------------------------------------------------------------
# 7. --out that is a file, lies under a file, or is unwritable


def test_bad_out_directories_exit_2(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    (tmp_path / "afile").write_text("x")
    for out, message in (
        (tmp_path / "afile", "is a file, not a directory"),
        (tmp_path / "afile" / "sub", "a part of the path is a file"),
    ):
        result = _run_cli(cfg, "--out", str(out))
        assert result.exit_code == 2 and message in _out(result) and "pass another --out" in _out(result)
    from forgetting.segmentation import run_forgetting_maps

    with pytest.raises(ConfigError, match="is a file"):  # forgetting maps: checked before training
        run_forgetting_maps(out_dir=tmp_path / "afile")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_directory_exits_2(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=r"not writable|cannot be created"):
            make_directory(ro, what="run directory", hint="pass another --out")
        result = _run_cli(str(_config(tmp_path)), "--out", str(ro / "sub"))
        assert result.exit_code == 2 and "cannot be created" in _out(result)
    finally:
        ro.chmod(0o755)


# --------------------------------------------------------------------------------------------------------
# 8. Damaged stores: real truncated and garbled files


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def _garble(path: Path, start: int) -> None:
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    data[start:] = noise
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_damaged_results_database_names_the_file_and_the_recovery(
    switch_run: tuple[Path, Path, dict[str, str]], tmp_path: Path, damage: str
) -> None:
    run, cfg, _ = switch_run
    out = _copy_run(run, tmp_path / "run")
    db = out / "results.sqlite"
    assert not (out / "results.sqlite-wal").exists()  # closed cleanly: everything is in the main file
    if damage == "truncated":
        _truncate(db, db.stat().st_size // 2)
    else:
        _garble(db, 100)  # the 100-byte header stays: SQLite opens it and finds the pages malformed
    for command in (["report", str(out)], ["run", str(cfg), "--out", str(out), "--no-report"]):
        result = runner.invoke(app, command, env={"COLUMNS": "300"})
        text = _out(result)
        assert result.exit_code == 2, text
        assert f"{db} cannot be read" in text and "To recover" in text and ".recover" in text
        assert "Traceback" not in text
    with pytest.raises(StoreCorruptError):
        ResultStore(out, readonly=True).experiments()


def test_garbled_rows_of_a_readable_database_are_named(
    switch_run: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    run, _, ids = switch_run
    for table, column, value, message in (
        ("experiments", "config_json", "{not json", f"the stored config of experiment {ids['random']}"),
        ("rounds", "seconds_json", "[1, 2", "holds garbled timings"),
    ):
        out = _copy_run(run, tmp_path / table)
        with sqlite3.connect(out / "results.sqlite") as con:
            con.execute(f"UPDATE {table} SET {column} = ?", (value,))
        con.close()
        with pytest.raises(StoreCorruptError, match=message):
            with ResultStore(out, readonly=True) as store:
                for row in store.experiments():
                    store.load_rounds(row.id, arrays=False)


def test_empty_results_database(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"")
    result = runner.invoke(app, ["report", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "is empty (0 bytes)" in _out(result)
    assert (out / "results.sqlite").stat().st_size == 0  # the report created nothing
    summary = run_experiments(parse_config(TINY), out, progress=False, fail_fast=True)  # a run starts it
    assert summary.ok and summary.rounds_written == 3


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_damaged_round_arrays_are_skipped_and_listed_and_rerun_recomputes_them(
    switch_run: tuple[Path, Path, dict[str, str]], tmp_path: Path, damage: str
) -> None:
    run, cfg, ids = switch_run
    out = _copy_run(run, tmp_path / "run")
    npz = out / "arrays" / ids["switch"] / "round-001.npz"
    if damage == "truncated":
        _truncate(npz, npz.stat().st_size // 2)
    else:
        _garble(npz, 40)
    with pytest.raises(StoreCorruptError, match=r"round-001\.npz: .*the other experiments are intact"):
        with ResultStore(out, readonly=True) as store:
            store.load_rounds(ids["switch"], arrays=True)
    result = runner.invoke(app, ["report", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, _out(result)
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "<h2>Could not read</h2>" in page and "round-001.npz" in page
    assert f"--rerun {ids['switch']}" in page
    assert "curves-mnist-5k-small-cnn.png" in page  # the rest of the report is there

    result = _run_cli(str(cfg), "--out", str(out), "--rerun", ids["switch"])
    assert result.exit_code == 0, _out(result)
    assert "1 finished now, 1 already done" in _out(result)
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Could not read" not in page and "switches-mnist-5k-small-cnn-switch" in page
    result = _run_cli(str(cfg), "--out", str(out), "--rerun", "0123456789ab", "--no-report")
    assert result.exit_code == 2 and "--rerun 0123456789ab: not an experiment of this config" in _out(result)


# --------------------------------------------------------------------------------------------------------
# 9. Malformed label files name the line or task


def test_unterminated_quote_and_malformed_label_studio_results_are_errors(tmp_path: Path) -> None:
    bad_csv = tmp_path / "labels.csv"
    bad_csv.write_text('item,label\na.png,cat\nb.png,"dog\nc.png,cat\n', encoding="utf-8")
    with pytest.raises(LabelImportError, match=r"labels\.csv line 3: not valid CSV"):
        read_label_file(bad_csv)
    quoted = tmp_path / "multi.csv"  # a quoted cell may span lines; the next record's line is right
    quoted.write_text('item,label\n"a\n.png",cat\nb.png,\n"c.png"x,dog\n', encoding="utf-8")
    with pytest.raises(LabelImportError, match=r"multi\.csv line 5: not valid CSV"):
        read_label_file(quoted)

    def export(value: object, **result: object) -> Path:
        task = {
            "id": 7,
            "data": {"item": "a.png"},
            "annotations": [{"id": 1, "result": [{"from_name": "label", "type": "choices", "value": value}]}],
        }
        task["annotations"][0]["result"][0].update(result)  # type: ignore[index]
        path = tmp_path / "ls.json"
        path.write_text(json.dumps([task]))
        return path

    for value in (["cat"], {"choice": "cat"}, "cat", None):
        with pytest.raises(LabelImportError, match=r"ls\.json task 7 annotation 1: result 0 .*has no choice"):
            read_label_file(export(value))
    assert read_label_file(export({"choices": ["cat"]})).rows[0].label == "cat"
    assert read_label_file(export({"x": 1}, from_name="box", type="rectanglelabels")).skipped == 1
    minimal = tmp_path / "min.json"
    minimal.write_text(json.dumps([{"id": 3, "image": "a.png", "label": {"chioces": ["cat"]}}]))
    with pytest.raises(LabelImportError, match=r"min\.json task 3: 'label' must be a class name"):
        read_label_file(minimal)


# --------------------------------------------------------------------------------------------------------
# 10. Decompression bombs


def test_oversized_image_gives_the_limit_and_how_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # Pillow then refuses more than 200 pixels
    with pytest.raises(DatasetFormatError, match=r"20x20 = 400 pixels is more than the limit of 200") as e:
        read_image_files([tmp_path / "big.png"])
    assert "FORGETTING_MAX_IMAGE_PIXELS=400" in str(e.value)
    with pytest.raises(LabelImportError, match="FORGETTING_MAX_IMAGE_PIXELS"):
        read_mask_file(tmp_path / "big.png")
    monkeypatch.setenv("FORGETTING_MAX_IMAGE_PIXELS", "400")
    assert read_image_files([tmp_path / "big.png"]).shape == (1, 1, 20, 20)
    monkeypatch.setenv("FORGETTING_MAX_IMAGE_PIXELS", "none")
    assert read_mask_file(tmp_path / "big.png").shape == (20, 20)
    monkeypatch.setenv("FORGETTING_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="FORGETTING_MAX_IMAGE_PIXELS must be"):
        read_image_files([tmp_path / "big.png"])
    assert PILImage.MAX_IMAGE_PIXELS == 100  # Pillow's own setting is left as it was


@pytest.mark.slow
def test_a_real_15000_square_png_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    Image.new("L", (15000, 15000)).save(tmp_path / "huge.png")
    t0 = time.perf_counter()
    with pytest.raises(DatasetFormatError, match="15000x15000 = 225,000,000 pixels"):
        read_image_files([tmp_path / "huge.png"])
    assert time.perf_counter() - t0 < 5


# --------------------------------------------------------------------------------------------------------
# 11. CSV formula injection


DANGEROUS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _assert_inert(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            if cell.startswith(FORMULA_PREFIXES):
                float(cell)  # only plain numbers may start so


def test_every_csv_the_project_writes_is_inert(tmp_path: Path) -> None:
    items = [
        RankedItem(i + 1, name, -0.5 * i, predicted=name, confidence=0.5) for i, name in enumerate(DANGEROUS)
    ]
    items.append(RankedItem(99, "plain.png", math.nan))
    rows = _cells(write_ranked_csv(tmp_path / "q.csv", items, strategy="gauss", round_=0))
    _assert_inert(rows)
    assert [r[1] for r in rows[1:]] == [f"'{n}" for n in DANGEROUS] + ["plain.png"]
    assert rows[2][2] == "-0.5" and rows[2][5] == "'+1+1"  # numbers stay numbers
    seg = _cells(
        write_segmentation_csv(tmp_path / "s.csv", items[:2], ["=a.png", "b.png"], strategy="x", round_=1)
    )
    _assert_inert(seg)
    assert seg[1][5] == "'=a.png"
    assert MaskIndex(["=a.png"], ["=a.png"]).resolve("'=a") == "=a.png"  # the name as the CSV showed it

    spec = ExperimentSpec(name="t", dataset="=HYPERLINK(1)", model="m", strategy="@s", seed=0)
    with ResultStore(tmp_path / "run") as store:
        store.add_experiment(spec)
        store.write_round(spec.id, replace(make_record(0), metrics={"test": {"accuracy": -0.25}}))
        metrics = _cells(store.export_csv(tmp_path / "metrics.csv"))
    _assert_inert(metrics)
    assert metrics[1][1] == "'=HYPERLINK(1)" and metrics[1][3] == "'@s" and metrics[1][-1] == "-0.25"
    assert safe_cell(3) == 3 and safe_cell("-1e-3") == "-1e-3" and safe_cell("-inf") == "'-inf"
    assert rows[6][1] == "'\rx" and len(rows) == len(items) + 1  # a carriage return does not split its row
    assert unquoted("'=x") == "=x" and unquoted("'plain") is None and unquoted("=x") is None


def test_our_neutralised_csv_imports_back_to_the_same_items_and_classes(tmp_path: Path) -> None:
    train = _mnist_train()
    names = ["=cmd.png", "+a.png", "-b.png", "@c.png", "d.png", "=e.png", "f.png", "@g.png"]
    for i, name in enumerate(names):
        write_png(tmp_path / "images" / name, train.images[i])
    classes = ["=one", "@two", "-three"]
    project = init_project(
        tmp_path / "proj",
        tmp_path / "images",
        classes=classes,
        model_options={"width": 4, "embed_dim": 16},
        train={"epochs": 1, "batch_size": 32},
        device="cpu",
    )
    project.add_labels(dict(zip(names[:3], classes, strict=True)))
    result = project.query(5, strategy="entropy")
    rows = _cells(result.csv_path)
    _assert_inert(rows)
    header, body = rows[0], rows[1:]
    assert all(r[header.index("predicted")].startswith("'") for r in body)  # every class name is neutralised
    for r in body:  # the annotator agrees with the model, copying the (neutralised) prediction
        r[header.index("label")] = r[header.index("predicted")]
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *body])
    summary = project.import_labels(filled)
    assert summary.added == 5 and summary.new_classes == []
    labels = {k: v.label for k, v in project.labels().items()}
    assert set(labels) == set(names[:3]) | {unquoted(r[1]) or r[1] for r in body}
    assert set(labels.values()) <= set(classes)


# --------------------------------------------------------------------------------------------------------
# 12. EventTracker: named errors


def test_event_tracker_bad_rows_and_bad_metadata_are_named_errors(tmp_path: Path) -> None:
    tracker = EventTracker((3,))
    for rows in ([0, 5], [-1, 0]):
        with pytest.raises(ConfigError, match=r"indices must be row ids in \[0, 3\).*nothing was updated"):
            tracker.update(torch.tensor(rows), torch.tensor([1, 1]))
    assert tracker.observations.tolist() == [0, 0, 0] and tracker.calls == 0
    tracker.update(torch.tensor([0, 2]), torch.tensor([1, 1]))
    assert tracker.observations.tolist() == [1, 0, 1]

    good = tracker.save(tmp_path / "good.npz")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for bad_meta, message in (
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "lacks or mangles"),
        (json.dumps({k: v for k, v in meta.items() if k != "shape"}), "lacks or mangles 'shape'"),
        (json.dumps({**meta, "pred_dtype": "float99"}), "lacks or mangles"),
    ):
        path = tmp_path / "bad.npz"
        np.savez(path, **{**arrays, "meta": np.array(bad_meta)})
        with pytest.raises(ForgettingError, match=message) as e:
            EventTracker.load(path)
        assert not isinstance(e.value, json.JSONDecodeError | KeyError | TypeError)


# --------------------------------------------------------------------------------------------------------
# 13. --round / --query-round list the valid rounds


def test_report_round_options_list_the_valid_rounds(switch_run: tuple[Path, Path, dict[str, str]]) -> None:
    run, _, _ = switch_run
    result = runner.invoke(app, ["report", str(run), "--round", "999"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "--round 999: no stored round 999 holds switch counts; rounds that do: 0-1" in _out(result)
    result = runner.invoke(app, ["report", str(run), "--query-round", "0"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "no stored round holds queried sections" in _out(result)
    assert runner.invoke(app, ["report", str(run), "--round", "1"]).exit_code == 0


# --------------------------------------------------------------------------------------------------------
# 14. gauss_select on huge and on tiny values


def test_gauss_select_rescales_huge_and_tiny_values() -> None:
    counts = np.r_[np.zeros(50), np.full(10, 8.0), np.full(5, 4.0)]
    _, ref = gauss_select(counts, 5, seed=0, return_info=True)
    high = set(range(50, 50 + ref.n_high))  # the samples with count 8
    assert ref.fallback is None and ref.n_high == 10
    extreme = (counts / 4.0 - 1.0) * 1.7e308  # the same points spread over [-1.7e308, 1.7e308]
    for x in (extreme, counts * 1e-200, counts * 1e300):
        picked, info = gauss_select(x, 5, seed=0, return_info=True)
        assert set(picked.tolist()) <= high and info.fallback is None and info.n_high == ref.n_high
        assert info.means[0] < info.means[1] and all(math.isfinite(m) for m in info.means)
    with pytest.raises(ValueError, match="finite"):
        gauss_select(np.r_[counts, np.inf], 5, seed=0)  # infinite counts are still refused


# --------------------------------------------------------------------------------------------------------
# 15. Cosmetics, and the same classes of defect elsewhere


def test_files_get_the_permissions_of_a_plain_open(switch_run: tuple[Path, Path, dict[str, str]]) -> None:
    run, _, ids = switch_run
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    npz = run / "arrays" / ids["switch"] / "round-000.npz"
    assert npz.stat().st_mode & 0o777 == expected
    assert (run / "results.sqlite").stat().st_mode & 0o777 == expected
    assert atomic_savez(run.parent / "x.npz", {"a": np.zeros(1)}).stat().st_mode & 0o777 == expected


def test_garbage_numpy_files_do_not_suggest_allow_pickle(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a numpy file at all" * 10)
    calls = [
        lambda: EventTracker.load(garbage),
        lambda: ImageSource.from_path(garbage).load(),
        lambda: read_mask_source(garbage),
        lambda: load_dataset("arrays", root=garbage),
    ]
    for call in calls:
        with pytest.raises(ForgettingError) as e:
            call()
        assert "allow_pickle" not in str(e.value) and "not a numpy .npy/.npz file" in str(e.value)
    with pytest.raises(ConfigError, match="not a numpy") as e:
        load_scores_file(garbage)
    assert "allow_pickle" not in str(e.value)


def test_mixed_sizes_in_a_project_name_the_size_option(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9), dtype=np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DatasetFormatError, match=r"--size HEIGHT,WIDTH") as e:
        ImageSource.from_path(tmp_path).load()
    assert "size=[height, width]" not in str(e.value)


def test_all_ignore_masks_get_the_segmentation_hint(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 16), 40 * i, dtype=np.uint8)).save(tmp_path / "images" / f"s{i}.png")
    init_project(
        tmp_path / "proj", tmp_path / "images", classes=["sand", "shale"], task="segmentation", device="cpu"
    )
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((12, 16), 255, dtype=np.uint8)).save(tmp_path / "masks" / "s0.png")
    result = runner.invoke(
        app, ["label", str(tmp_path / "proj"), str(tmp_path / "masks")], env={"COLUMNS": "300"}
    )
    text = _out(result)
    assert result.exit_code == 0, text
    assert "no labelled pixels: every pixel of the 1 mask(s) holds the ignore index 255" in text
    assert "label column" not in text


def test_other_text_inputs_give_named_errors(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "a.png")
    (folder / "labels.csv").write_bytes("filename,label\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match="not UTF-8"):
        load_dataset("image-folder", root=folder)
    (folder / "labels.csv").write_text('filename,label\na.png,"cat\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="not valid CSV"):
        load_dataset("image-folder", root=folder)

    project = init_project(tmp_path / "proj", folder, classes=["a", "b"], device="cpu")
    (project.root / "labels.jsonl").write_bytes(b'{"item": "a.png", "label": "caf\xe9"}\n')
    with pytest.raises(ProjectError, match="is not UTF-8 text"):
        project.labels()
    (project.root / "labels.jsonl").write_text("")
    result = runner.invoke(app, ["query", str(project.root), "--seed", "-1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(ConfigError, match="seed must be a non-negative"):
        project.query(1, strategy="random", seed=-1)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ProjectError, match="is a file, not a directory"):
        init_project(tmp_path / "afile", folder, classes=["a", "b"])
    from forgetting.segmentation.augment_protocol import run_augment_protocol

    with pytest.raises(ConfigError, match="non-negative"):
        run_augment_protocol(out_dir=tmp_path / "aug", seeds=[-1])
