"""`forgetting maps` end to end on a tiny config: the files it writes agree with each other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from forgetting.cli import app
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.segmentation import (
    SegmentationMetrics,
    default_maps_config,
    load_maps_config,
    parse_maps_config,
    run_forgetting_maps,
    spearman,
    within_class_rho,
)

runner = CliRunner()

TINY = """
name = "maps-tiny"
seed = 0
device = "cpu"
model = "unet"
model_options = { base = 4, depth = 2 }
[data.options]
inlines = 8
crosslines = 8
depth = 32
[train]
epochs = 3
batch_size = 4
[track]
batch_size = 16
[maps]
tau = 1
min_region_area = 1
sections = 2
"""


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # tiny tensors: one thread is faster, and far faster on a machine whose cores are busy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cli_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    result = runner.invoke(app, ["maps", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "mIoU" in text and "frequently forgotten regions" in text and "report:" in text
    assert text.count("map: ") == 3

    for name in ("maps.npz", "summary.json", "model.pt", "tracker-train.npz", "tracker-test.npz"):
        assert (out / name).is_file(), name
    index = out / "report" / "index.html"
    html = index.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["map_pngs"]) == 4  # 2 train + 2 test sections
    for png in summary["map_pngs"]:
        assert (out / png).is_file() and Path(png).name in html
    for png in (out / "report").glob("*.png"):
        assert png.name in html  # every figure is on the page

    with np.load(out / "maps.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    # metrics: recomputed from the stored confusion matrix
    test = SegmentationMetrics.from_confusion(arrays["test_confusion"])
    assert summary["metrics"]["test"]["mean_iou"] == pytest.approx(test.mean_iou)
    assert f"{test.mean_iou:.3f}" in html
    assert int(arrays["test_confusion"].sum()) == 16 * 32 * 8  # every test pixel counted once
    # maps: the stored arrays agree with the tracker file and the region statistics
    tracker = EventTracker.load(out / "tracker-train.npz")
    assert np.array_equal(tracker.forgetting.numpy(), arrays["train_forgetting"])
    assert np.array_equal(tracker.switches.numpy(), arrays["train_switches"])
    assert tracker.epochs_seen == [1, 2, 3]
    valid = arrays["train_masks"] != 255
    assert np.array_equal(arrays["train_frequent"], (arrays["train_forgetting"] >= 1) & valid)
    train = summary["maps"]["train"]
    assert train["regions"]["count"] == int(arrays["train_regions"].max())
    assert train["regions"]["total_area"] == int((arrays["train_regions"] > 0).sum())
    assert train["fraction_frequent"] == pytest.approx(arrays["train_frequent"].sum() / valid.sum())
    rho = spearman(arrays["train_forgetting"], arrays["train_margin"], valid, seed=0).rho
    assert train["correlation_forgetting_margin"]["rho"] == pytest.approx(rho)
    masks = arrays["train_masks"]
    by_class = [
        spearman(arrays["train_forgetting"], arrays["train_boundary_distance"], valid & (masks == c))
        for c in range(6)
    ]
    within = train["correlation_forgetting_distance"]["within_class_rho"]
    assert within == pytest.approx(within_class_rho(by_class))
    groups = np.bincount(arrays["train_temporal_group"][valid].astype(np.int64), minlength=5)
    assert list(train["temporal"]["pixels"].values()) == groups.tolist()
    assert summary["epochs"] == 3 and summary["classes"][4] == "scruff"


def test_cli_config_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepoch = 3\n")
    result = runner.invoke(app, ["maps", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "train.epoch" in result.output and "epochs" in result.output
    result = runner.invoke(app, ["maps", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())
    bad.write_text("[data.options]\nsize = 3\n")
    result = runner.invoke(app, ["maps", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "data.options" in result.output
    # padding (label 255, crossline sections narrower than inline ones) that is not ignored
    bad.write_text("ignore_index = -1\n[data.options]\ninlines = 8\ncrosslines = 6\ndepth = 32\n")
    result = runner.invoke(app, ["maps", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "[255]" in result.output and "ignore_index" in result.output
    assert not (tmp_path / "x" / "maps.npz").exists()


def test_arrays_dataset_with_void_label(tmp_path: Path) -> None:
    # the generic arrays format: masks with a 255 void border; the arrays loader names classes "0".."255",
    # the pipeline cuts them back to the 3 real classes
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 16, 16), dtype=np.uint8)
    masks = np.zeros((10, 16, 16), dtype=np.int64)
    masks[:, 6:, :] = 1
    masks[:, 11:, :] = 2
    images[masks == 2] //= 2
    masks[:, :, :2] = 255
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "masks.npy", masks)
    config = parse_maps_config(
        {
            "name": "arrays",
            "device": "cpu",
            "dataset": "arrays",
            "model": "deconvnet",
            "model_options": {"base": 4, "depth": 2},
            "data": {"root": str(tmp_path), "options": {"test_fraction": 0.3}},
            "train": {"epochs": 2, "batch_size": 4},
            "track": {"test": False},
            "maps": {"sections": 1},
        }
    )
    result = run_forgetting_maps(config, tmp_path / "run")
    assert result.summary["classes"] == ["0", "1", "2"]
    assert set(result.analyses) == {"train"} and len(result.map_pngs) == 1
    train = result.analyses["train"]
    assert train.valid.sum() == 7 * 16 * 14  # the void border is never counted
    assert result.metrics["test"].pixels.sum() == 3 * 16 * 14
    assert result.report.is_file() and result.arrays.is_file()


def test_default_config_is_packaged_and_matches_the_example() -> None:
    config = default_maps_config()
    assert config.dataset == "seismic-synthetic" and config.model == "unet"
    example = Path(__file__).resolve().parents[1] / "examples" / "maps-seismic.toml"
    assert load_maps_config(example) == config
    f3 = load_maps_config(Path(__file__).resolve().parents[1] / "examples" / "maps-f3.toml")
    assert f3.dataset == "f3" and f3.data.options["orientation"] == "inline"
    with pytest.raises(ConfigError, match="not a segmentation model"):
        parse_maps_config('model = "small-cnn"')
