"""Human in the loop for segmentation: labelling projects whose labels are masks (forgetting.annotate).

Sections of the synthetic seismic volume (24 x 12 pixels, 6 facies) are written as PNG files (Python API)
or as an .npz (CLI); simulated annotators return the true masks as PNG folders (8-bit grayscale, palette)
and .npy / .npz files. A tiny U-Net (base 4, depth 2, 2 epochs) keeps every query around a second on a CPU.
"""

from __future__ import annotations

import csv
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from forgetting import LabelConflictError, LabelImportError, ProjectError
from forgetting.annotate import LabelingProject, init_project, read_mask_file
from forgetting.annotate.rle import decode_alpha
from forgetting.cli import app
from forgetting.data import load_dataset

runner = CliRunner()

TINY = {
    "model_options": {"base": 4, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4},
    "device": "cpu",
}


def _out(result: object) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(str(result.output).split())  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def _sections() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 [24, 24, 12] seismic sections, their uint8 [24, 24, 12] facies masks, and the class names."""
    data = load_dataset("seismic-synthetic", inlines=12, crosslines=12, depth=24, seed=0)
    images = data.train.images[:, 0].numpy()
    masks = data.train.targets.numpy().astype(np.uint8)
    return images, masks, list(data.classes)


CLASSES = _sections()[2]
N = _sections()[0].shape[0]


@pytest.fixture
def section_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The sections as grayscale PNGs in two sub-folders; returns the folder and item id -> true mask."""
    images, masks, _ = _sections()
    truth = {}
    for i in range(N):
        item = f"{'inline' if i % 2 else 'crossline'}/{i:03d}.png"
        path = tmp_path / "sections" / item
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(path)
        truth[item] = masks[i]
    return tmp_path / "sections", truth


def _palette_png(path: Path, mask: np.ndarray) -> None:
    img = Image.fromarray(mask, mode="P")
    img.putpalette([v for c in range(256) for v in (c * 40 % 256, c * 90 % 256, c * 20 % 256)])
    img.save(path)


def _return_masks(folder: Path, files: dict[str, np.ndarray], *, palette: int = 0, npy: int = 0) -> Path:
    """A simulated annotator: masks named ``files`` keys (without extension), the first ``palette`` as palette
    PNGs, the next ``npy`` as .npy files, the rest as 8-bit grayscale PNGs."""
    for k, (name, mask) in enumerate(files.items()):
        stem = folder / Path(name).with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        if k < palette:
            _palette_png(stem.with_suffix(".png"), mask)
        elif k < palette + npy:
            np.save(stem.with_suffix(".npy"), mask.astype(np.int16))
        else:
            Image.fromarray(mask).save(stem.with_suffix(".png"))
    return folder


def _mask_files(query_csv: Path) -> dict[str, str]:
    """item -> mask_file of a segmentation round's ranked CSV."""
    with query_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == ["rank", "item", "score", "strategy", "round", "mask_file"]
    return {row["item"]: row["mask_file"] for row in rows}


def _project(root: Path, images: Path, **kwargs: object) -> LabelingProject:
    return init_project(root, images, classes=CLASSES, task="segmentation", query_size=4, **TINY, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ settings


def test_init_segmentation_project(
    section_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, _ = section_folder
    project = _project(tmp_path / "p", folder)
    settings = LabelingProject.open(project.root).settings
    assert (settings.task, settings.model, settings.ignore_index) == ("segmentation", "unet", 255)
    text = (project.root / "forgetting.toml").read_text()
    assert 'task = "segmentation"' in text and "[segmentation]\nignore_index = 255" in text
    config = (project.root / "label_studio_config.xml").read_text()  # brush labels, in class-id order
    assert '<BrushLabels name="label" toName="image">' in config
    assert [line.split('"')[1] for line in config.splitlines() if "<Label " in line] == CLASSES
    status = project.status()
    assert (status.task, status.n_items, status.n_labeled) == ("segmentation", N, 0)
    assert status.pixel_counts == dict.fromkeys(CLASSES, 0)

    with pytest.raises(ProjectError, match="classes up front"):
        init_project(tmp_path / "a", folder, task="segmentation")
    with pytest.raises(ProjectError, match=r"classification model, but the project.s task is segmentation"):
        init_project(tmp_path / "b", folder, classes=CLASSES, task="segmentation", model="small-cnn")
    with pytest.raises(ProjectError, match=r"ignore_index = 2 is the id of class 'lower_north_sea'"):
        init_project(tmp_path / "c", folder, classes=CLASSES, task="segmentation", ignore_index=2)
    with pytest.raises(ProjectError, match=r"segmentation projects support: .*gauss.*kcenter-pixels"):
        init_project(tmp_path / "d", folder, classes=CLASSES, task="segmentation", strategy="badge")
    none = init_project(tmp_path / "e", folder, classes=CLASSES, task="segmentation", ignore_index=None)
    assert (
        none.settings.ignore_index is None
        and 'ignore_index = "none"' in none.root.joinpath("forgetting.toml").read_text()
    )

    # Bad [segmentation] values in the edited file are named with the allowed ones; classification has none.
    manifest = project.root / "forgetting.toml"
    manifest.write_text(text.replace('model = "unet"', 'model = "small-cnn"'))
    with pytest.raises(ProjectError, match=r"small-cnn.* is a classification model.*one of deconvnet, unet"):
        project.query(strategy="random")
    manifest.write_text(text.replace('model = "unet"\n', ""))  # the default model of the task
    assert LabelingProject.open(project.root).settings.model == "unet"
    manifest.write_text(text.replace('reduction = "mean"', 'reduction = "median"'))
    with pytest.raises(ProjectError, match=r"segmentation\.reduction.*'mean', 'sum', 'top-q'"):
        LabelingProject.open(project.root)
    manifest.write_text(text.replace('task = "segmentation"', 'task = "classification"'))
    with pytest.raises(ProjectError, match=r"\[segmentation\] applies to task = \"segmentation\" only"):
        LabelingProject.open(project.root)


# ------------------------------------------------------------------------------------ importing masks


def test_import_masks_folder_npz_idempotence_conflicts(
    section_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, truth = section_folder
    project = _project(tmp_path / "p", folder)
    items = sorted(truth)
    first = {item: truth[item] for item in items[:6]}
    returned = _return_masks(tmp_path / "returned", first, palette=2, npy=2)
    summary = project.import_labels(returned)
    assert (summary.added, summary.unchanged, summary.overwritten, summary.skipped) == (6, 0, 0, 0)
    ledger = project.labels()
    for item in items[:6]:
        entry = ledger[item]
        assert entry.label == "" and entry.source == "returned" and entry.round == 0
        assert entry.mask is not None and entry.mask.startswith("masks/") and entry.mask.endswith(".png")
        assert np.array_equal(project.load_mask(item), truth[item])
        assert entry.pixels == np.bincount(truth[item].ravel(), minlength=6).tolist() and entry.ignored == 0

    # Importing the same masks again (any file format) changes nothing.
    ledger_bytes = (project.root / "labels.jsonl").read_bytes()
    stored = sorted(p.name for p in (project.root / "masks").rglob("*.png"))
    again = project.import_labels(returned)
    assert (again.added, again.unchanged, again.changed) == (0, 6, False)
    npz = tmp_path / "masks.npz"
    np.savez(npz, masks=np.stack([truth[i] for i in items[4:8]]), ids=np.array(items[4:8]))
    summary = project.import_labels(npz)
    assert (summary.added, summary.unchanged) == (2, 2)
    assert (project.root / "labels.jsonl").read_bytes() != ledger_bytes
    assert set(stored) <= {p.name for p in (project.root / "masks").rglob("*.png")}

    # A different mask for a labelled image: refused, naming the image, the file and the changed pixels.
    item = items[1]
    edited = truth[item].copy()
    edited[:3] = 255  # three rows marked unlabelled
    clash = _return_masks(tmp_path / "clash", {item: edited, items[2]: truth[items[2]]})
    before = (project.root / "labels.jsonl").read_bytes()
    with pytest.raises(LabelConflictError) as err:
        project.import_labels(clash)
    message = str(err.value)
    assert repr(item) in message and "differs in 36 of 288 pixels" in message
    assert "--overwrite" in message and "clash/" in message
    assert (project.root / "labels.jsonl").read_bytes() == before
    old_file = project.root / project.labels()[item].mask  # type: ignore[operator]
    summary = project.import_labels(clash, overwrite=True)
    assert (summary.overwritten, summary.unchanged) == (1, 1)
    assert np.array_equal(project.load_mask(item), edited) and not old_file.exists()
    assert project.labels()[item].ignored == 36

    # Python: add_masks with the same rules; a mask with no labelled pixel is skipped (not yet labelled).
    summary = project.add_masks(
        {items[10]: torch.from_numpy(truth[items[10]]), items[11]: np.full((24, 12), 255)}
    )
    assert (summary.added, summary.skipped) == (1, 1) and items[11] not in project.labels()
    with pytest.raises(ProjectError, match="add_masks"):
        project.add_labels({items[12]: CLASSES[0]})

    status = project.status()
    assert status.n_labeled == 9 and status.ignored_pixels == 36
    expected = sum(np.bincount(project.load_mask(i).ravel(), minlength=256)[:6] for i in project.labels())
    assert list(status.pixel_counts.values()) == expected.tolist()
    assert status.class_counts["zechstein"] == sum(
        int((project.load_mask(i) == 5).any()) for i in project.labels()
    )


def test_mask_validation_errors(section_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    folder, truth = section_folder
    project = _project(tmp_path / "p", folder)
    items = sorted(truth)

    def problems(masks: dict[str, np.ndarray], name: str) -> str:
        with pytest.raises(LabelImportError) as err:
            project.import_labels(_return_masks(tmp_path / name, masks))
        assert "nothing was imported" in str(err.value)
        return str(err.value)

    message = problems({items[0]: truth[items[0]].T.copy()}, "transposed")
    assert f"transposed/{Path(items[0]).with_suffix('.png')}" in message
    assert "the mask is 12x24 (height x width)" in message and "is 24x12" in message
    bad = truth[items[1]].copy()
    bad[5, 7] = 9
    message = problems({items[1]: bad, items[2]: truth[items[2]]}, "values")
    assert "value(s) 9 in 1 pixel(s), first at row 5, column 7" in message
    assert "class ids 0..5" in message and "ignore index 255" in message
    message = problems({"inline/999.png": truth[items[0]]}, "unknown")
    assert "'inline/999'" in message and "mask_file column" in message

    mask = truth[items[0]]  # the mask of crossline/000.png
    rgb = np.stack([mask * 40, mask, mask], axis=-1).astype(np.uint8)
    (tmp_path / "colour" / "crossline").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "colour" / "crossline" / "000.png")
    with pytest.raises(LabelImportError, match=r"colour \(RGB\) image.*class id"):
        project.import_labels(tmp_path / "colour")
    gray_rgb = tmp_path / "gray.png"
    Image.fromarray(np.repeat(mask[..., None], 3, axis=-1)).save(gray_rgb)  # grey saved as RGB: read as grey
    assert np.array_equal(read_mask_file(gray_rgb), mask)
    (tmp_path / "floats" / "crossline").mkdir(parents=True)
    np.save(tmp_path / "floats" / "crossline" / "000.npy", mask.astype(np.float32))
    with pytest.raises(LabelImportError, match=r"float32 is not an integer type.*astype"):
        project.import_labels(tmp_path / "floats")
    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    Image.fromarray(truth[items[0]]).save(jpeg / "x.jpg")
    with pytest.raises(LabelImportError, match="JPEG compression changes the class ids"):
        project.import_labels(jpeg)
    np.savez(tmp_path / "no_ids.npz", masks=np.stack([truth[items[0]]]))
    with pytest.raises(LabelImportError, match=r"expected arrays `masks` \[n, H, W\] and `ids`"):
        project.import_labels(tmp_path / "no_ids.npz")
    (tmp_path / "labels.csv").write_text(f"item,label\n{items[0]},zechstein\n")
    with pytest.raises(LabelImportError, match=r"imports masks.*mask_file column"):
        project.import_labels(tmp_path / "labels.csv")
    inside = _return_masks(folder / "masks_here", {items[0]: mask})
    with pytest.raises(LabelImportError, match="inside the image folder"):
        project.import_labels(inside)
    shutil.rmtree(inside)
    assert project.labels() == {} and not (project.root / "masks").exists()

    # A project with "none" treats 255 as a value like any other: out of range here.
    strict = init_project(tmp_path / "s", folder, classes=CLASSES, task="segmentation", ignore_index=None)
    edited = mask.copy()
    edited[0, 0] = 255
    with pytest.raises(
        LabelImportError, match=r"value\(s\) 255 .* are not class ids 0\.\.5; .*ignore_index = 255"
    ):
        strict.add_masks({items[0]: edited})


# ------------------------------------------------------------------------------------ queries (API)


def test_two_segmentation_rounds_python_api(
    section_folder: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, truth = section_folder
    project = _project(tmp_path / "proj", folder)

    # No masks yet: model-based strategies name the cold starts; strategies without a segmentation form fail.
    with pytest.raises(ProjectError, match="kcenter-pixels"):
        project.query()
    with pytest.raises(ProjectError, match="segmentation projects support"):
        project.query(strategy="batchbald")

    r0 = project.query(strategy="kcenter-pixels")
    assert r0.round == 0 and r0.task == "segmentation" and len(r0.items) == 4 and len(set(r0.item_ids)) == 4
    files = _mask_files(r0.csv_path)
    assert files == {i: i for i in r0.item_ids}  # PNG images: the mask file has the image's name
    assert not r0.maps_path.exists()
    tasks = json.loads(r0.label_studio_path.read_text())  # no model yet: tasks without pre-annotations
    assert [t["data"]["item"] for t in tasks] == r0.item_ids and not any("predictions" in t for t in tasks)
    assert "no prediction or score maps" in r0.html_path.read_text()
    project.import_labels(_return_masks(tmp_path / "r0", {files[i]: truth[i] for i in r0.item_ids}))

    # Round 1: GauSS on the reduced pixel switch counts of a U-Net trained on those 4 masks.
    r1 = project.query()
    assert r1.round == 1 and r1.strategy == "gauss" and r1.n_labeled == 4 and r1.n_pool == N - 4
    assert not set(r1.item_ids) & set(r0.item_ids) and [r.rank for r in r1.items] == [1, 2, 3, 4]
    assert all(np.isfinite(r.score) and r.predicted is None for r in r1.items)
    assert r1.info["train"]["epochs"] == 2
    maps = np.load(r1.maps_path)
    assert list(maps["items"]) == r1.item_ids and maps["pred"].shape == (4, 24, 12)
    assert maps["switch_maps"].dtype == np.uint8 and int(maps["switch_maps"].max()) <= 1  # 2 epochs
    dynamics = np.load(r1.directory / "dynamics.npz")
    assert dynamics["switches"].shape == (N - 4,) and set(dynamics["items"]) == set(truth) - set(r0.item_ids)
    with (r1.directory / "dynamics.csv").open(newline="") as fh:  # a per-sample summary of the pixels
        table = list(csv.DictReader(fh))
    assert [r["sample_id"] for r in table] == list(dynamics["items"])
    assert {r["pixels"] for r in table} == {str(24 * 12)} and {r["observations"] for r in table} == {"2"}
    assert sum(int(r["switches_sum"]) for r in table) > 0
    page = r1.html_path.read_text()
    assert page.count("<figure>") == 4 * 3 and "switches while training" in page and "zechstein" in page
    # Label Studio tasks carry the model's masks as brush pre-annotations, scored by rank.
    tasks = json.loads(r1.label_studio_path.read_text())
    for k, task in enumerate(tasks):
        (prediction,) = task["predictions"]
        assert prediction["score"] == (4 - k) / 4 and prediction["model_version"].startswith(
            "forgetting-round-1"
        )
        painted = np.full((24, 12), -1)
        for result in prediction["result"]:
            assert (result["original_height"], result["original_width"]) == (24, 12)
            painted[decode_alpha(result["value"]["rle"], 24, 12)] = CLASSES.index(
                result["value"]["brushlabels"][0]
            )
        assert np.array_equal(painted, maps["pred"][k])

    # Same masks, settings and seed: the same ranking, recomputed or in a copy of the project.
    again = project.query(force=True)
    assert not again.reused and again.item_ids == r1.item_ids
    copy = tmp_path / "copy"
    shutil.copytree(project.root, copy)
    shutil.rmtree(copy / "rounds" / "1")
    redo = LabelingProject.open(copy).query()
    assert redo.round == 1 and redo.item_ids == r1.item_ids
    assert redo.csv_path.read_bytes() == r1.csv_path.read_bytes()

    # Round 2: entropy per pixel, reduced by the top 20% of each image's pixels ([segmentation] in the file).
    np.savez(tmp_path / "r1.npz", masks=np.stack([truth[i] for i in r1.item_ids]), ids=np.array(r1.item_ids))
    assert project.import_labels(tmp_path / "r1.npz").added == 4
    manifest = project.root / "forgetting.toml"
    manifest.write_text(
        manifest.read_text()
        .replace('reduction = "mean"', 'reduction = "top-q"')
        .replace("top_q = 0.1", "top_q = 0.2")
    )
    r2 = project.query(strategy="entropy")
    assert (
        r2.round == 2 and r2.n_labeled == 8 and not set(r2.item_ids) & (set(r0.item_ids) | set(r1.item_ids))
    )
    maps = np.load(r2.maps_path)
    assert maps["pixel_scores"].shape == (4, 24, 12) and "switch_maps" not in maps
    assert max(r.score for r in r2.items) <= float(np.log(6)) + 1e-6
    status = project.status()
    assert status.rounds == 3 and status.n_labeled == 8 and len(status.pending) == 4


# ------------------------------------------------------------------------------------ end to end (CLI)


def test_segmentation_rounds_cli_npz(tmp_path: Path) -> None:
    images, masks, _ = _sections()
    npz = tmp_path / "sections.npz"
    np.savez(npz, images=images)  # [N, H, W], no masks in the file
    proj = tmp_path / "proj"
    args = ["init-project", str(proj), "--images", str(npz), "--classes", ",".join(CLASSES)]
    result = runner.invoke(app, [*args, "--task", "segmentation", "--ignore-index", "255"])
    assert result.exit_code == 0, result.output
    assert f"(segmentation): {N} images" in _out(result)
    manifest = proj / "forgetting.toml"
    text = manifest.read_text().replace("[model_options]\n", "[model_options]\nbase = 4\ndepth = 2\n")
    manifest.write_text(
        text.replace("[train]\n", "[train]\nepochs = 2\n").replace("batch_size = 64", "batch_size = 4")
    )

    result = runner.invoke(app, ["query", str(proj), "--strategy", "random", "-n", "4", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "mask_file" in _out(result) and "Label Studio tasks" in _out(result)
    files = _mask_files(proj / "rounds" / "0" / "query.csv")
    width = len(str(N - 1))
    assert all(f == f"{int(i):0{width}d}.png" and (proj / "media" / f).is_file() for i, f in files.items())

    returned = _return_masks(tmp_path / "returned", {f: masks[int(i)] for i, f in files.items()}, palette=1)
    result = runner.invoke(app, ["label", str(proj), str(returned)])
    assert result.exit_code == 0 and "4 added" in _out(result), result.output
    result = runner.invoke(app, ["label", str(proj), "--import", str(returned)])  # re-import: a no-op
    assert result.exit_code == 0 and "0 added, 4 already there" in _out(result)

    result = runner.invoke(app, ["query", str(proj), "-n", "4"])
    assert result.exit_code == 0, result.output
    assert "round 1" in _out(result) and "gauss" in _out(result)
    assert (proj / "rounds" / "1" / "maps.npz").is_file()

    # A contradicting mask: exit 2 naming the image and the way out; --overwrite replaces it.
    item, name = next(iter(files.items()))
    wrong = masks[int(item)].copy()
    wrong[wrong == 5] = 4
    bad = _return_masks(tmp_path / "bad", {name: wrong})
    result = runner.invoke(app, ["label", str(proj), str(bad)])
    assert result.exit_code == 2 and repr(item) in _out(result) and "--overwrite" in _out(result)
    result = runner.invoke(app, ["label", str(proj), str(bad), "--overwrite"])
    assert result.exit_code == 0 and "1 overwritten" in _out(result)
    result = runner.invoke(app, ["label", str(proj)])
    assert result.exit_code == 2 and "give what to import" in _out(result)

    result = runner.invoke(app, ["status", str(proj)])
    assert result.exit_code == 0 and "labelled: 4; rounds queried: 2" in _out(result)
    assert "labelled pixels per class" in _out(result) and "zechstein" in _out(result)
    ledger = [json.loads(line) for line in (proj / "labels.jsonl").read_text().splitlines()]
    assert sum(sum(e["pixels"]) for e in ledger) == 4 * 24 * 12
    assert "unlabelled (ignore-index) pixels: 0" in _out(result)
