"""Human in the loop: labelling projects on the user's own images (forgetting.annotate and its CLI).

End to end: two labelling rounds on real MNIST digits (mnist-5k) written as a folder of PNGs (Python API)
and as an .npz (CLI), with simulated annotators that answer from the true labels, once through a filled-in
CSV and once through a Label Studio export.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from forgetting import LabelConflictError, LabelImportError, ProjectError
from forgetting.annotate import LabelingProject, init_project, read_label_file, write_png
from forgetting.annotate.sources import ItemIndex
from forgetting.cli import app
from forgetting.data import load_dataset
from forgetting.exceptions import UnknownNameError

runner = CliRunner()


def _out(result: object) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(str(result.output).split())  # type: ignore[attr-defined]


CLASSES = [str(c) for c in range(10)]
TINY = {
    "model_options": {"width": 4, "embed_dim": 16},
    "train": {"epochs": 3, "batch_size": 32},
    "device": "cpu",
}
N_IMAGES = 160


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, np.ndarray]:
    """A seeded random subset of mnist-5k: uint8 [N, 1, 28, 28] images and int64 [N] labels."""
    train = load_dataset("mnist-5k", seed=0).train
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:N_IMAGES]
    return train.images[rows], train.labels[rows].numpy()


@pytest.fixture
def png_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The digits as PNG files in two sub-folders; returns the folder and item id -> true class."""
    images, labels = _digits()
    truth = {}
    for i in range(N_IMAGES):
        item = f"part{i % 2}/{i:04d}.png"
        write_png(tmp_path / "images" / item, images[i])
        truth[item] = str(int(labels[i]))
    return tmp_path / "images", truth


@pytest.fixture
def npz_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    images, labels = _digits()
    path = tmp_path / "digits.npz"
    np.savez(path, images=images.numpy()[:, 0])  # [N, H, W]: no labels in the file
    return path, {str(i): str(int(y)) for i, y in enumerate(labels)}


def _fill_csv(query_csv: Path, truth: dict[str, str], out: Path) -> Path:
    """A simulated annotator: fill in the label column of a round's ranked CSV."""
    with query_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == [
        "rank",
        "item",
        "score",
        "strategy",
        "round",
        "predicted",
        "confidence",
        "label",
    ]
    for row in rows:
        row["label"] = truth[row["item"]]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def _label_studio_export(
    tasks_file: Path, truth: dict[str, str], out: Path, *, keep_item: bool = True
) -> Path:
    """A simulated Label Studio round trip: import the tasks, annotate each, export as JSON."""
    tasks = json.loads(tasks_file.read_text())
    exported = []
    for k, task in enumerate(tasks):
        data = dict(task["data"])
        item = data["item"]
        if not keep_item:  # only the image URL comes back; uploads get an 8-hex-digit prefix
            del data["item"]
            data["image"] = f"/data/upload/3/{k:08x}-{Path(data['image'].split('?d=')[-1]).name}"
        result = [
            {
                "from_name": "label",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": [truth[item]]},
            }
        ]
        exported.append(
            {
                "id": 100 + k,
                "data": data,
                "meta": task["meta"],
                "annotations": [
                    {"id": 1, "was_cancelled": True, "result": []},  # a skipped attempt counts nothing
                    {"id": 2, "was_cancelled": False, "result": result},
                ],
                "predictions": [],
            }
        )
    out.write_text(json.dumps(exported))
    return out


# ------------------------------------------------------------------------------------ end to end (API)


def test_two_labelling_rounds_python_api(png_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, truth = png_folder
    project = init_project(tmp_path / "proj", folder, classes=CLASSES, query_size=16, **TINY)  # type: ignore[arg-type]
    assert project.status().n_items == N_IMAGES and project.status().n_labeled == 0

    # No labels yet: a strategy that needs a model says so and names the cold starts.
    with pytest.raises(ProjectError, match="kcenter-pixels"):
        project.query()
    with pytest.raises(UnknownNameError, match="known strategies"):
        project.query(strategy="nope")

    # Round 0: class-agnostic cold start, answered by filling in the ranked CSV.
    r0 = project.query(strategy="kcenter-pixels")
    assert r0.round == 0 and len(r0.items) == 16 and len(set(r0.item_ids)) == 16
    assert all(r.predicted is None for r in r0.items)
    answers0 = _fill_csv(r0.csv_path, truth, tmp_path / "answers0.csv")
    summary = project.import_labels(answers0)
    assert (summary.added, summary.unchanged, summary.skipped) == (16, 0, 0)

    # Round 1: GauSS on the switch counts of a model trained on those 16 labels.
    r1 = project.query()
    assert r1.round == 1 and r1.strategy == "gauss" and r1.n_labeled == 16 and r1.n_pool == N_IMAGES - 16
    assert len(r1.items) == 16 and not set(r1.item_ids) & set(r0.item_ids)
    assert [r.rank for r in r1.items] == list(range(1, 17))
    assert all(r.predicted in CLASSES and 0.0 < r.confidence <= 1.0 for r in r1.items)
    assert r1.info["train"]["epochs"] == 3
    assert (r1.directory / "dynamics.npz").is_file()
    # the per-sample table of the tracked pool, its rows named by item id
    with (r1.directory / "dynamics.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    npz = np.load(r1.directory / "dynamics.npz")
    assert [r["sample_id"] for r in table] == list(npz["items"]) and len(table) == N_IMAGES - 16
    assert [int(r["switches"]) for r in table] == npz["switches"].tolist()
    assert {r["observations"] for r in table} == {"3"} and {r["observed_with_targets"] for r in table} == {
        "false"
    }
    tasks = json.loads(r1.label_studio_path.read_text())
    assert [t["data"]["item"] for t in tasks] == r1.item_ids
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=images/" + r1.item_ids[0]  # under the images
    assert tasks[0]["meta"]["rank"] == 1 and tasks[0]["meta"]["strategy"] == "gauss"
    page = r1.html_path.read_text()
    assert page.count("<figure>") == 16 and "data:image/png;base64," in page
    assert '<Choice value="9"/>' in (project.root / "label_studio_config.xml").read_text()

    # Re-running the same query is safe: the stored result, then an identical recomputation.
    csv_bytes = r1.csv_path.read_bytes()
    again = project.query()
    assert again.reused and again.round == 1 and again.item_ids == r1.item_ids
    forced = project.query(force=True)
    assert not forced.reused and forced.round == 1 and forced.item_ids == r1.item_ids
    assert r1.csv_path.read_bytes() == csv_bytes
    assert sorted(p.name for p in (project.root / "rounds").iterdir()) == ["0", "1"]

    # Answered through Label Studio (half the tasks come back without data.item, as uploads).
    export = _label_studio_export(r1.label_studio_path, truth, tmp_path / "export.json")
    parsed = read_label_file(export)
    assert len(parsed.rows) == 16
    partial = json.loads(export.read_text())
    for task in partial[8:]:
        del task["data"]["item"]
        task["data"]["image"] = "/data/upload/3/1a2b3c4d-" + Path(task["data"]["image"].split("?d=")[1]).name
    export.write_text(json.dumps(partial))
    summary = project.import_labels(export)
    assert summary.added == 16
    labels = project.labels()
    assert len(labels) == 32 and all(labels[i].label == truth[i] for i in labels)
    assert {labels[i].round for i in r0.item_ids} == {1} and {labels[i].round for i in r1.item_ids} == {2}

    # Round 2 continues from there.
    r2 = project.query()
    assert r2.round == 2 and r2.n_labeled == 32 and not set(r2.item_ids) & set(labels)
    status = project.status()
    assert status.rounds == 3 and status.n_labeled == 32 and len(status.pending) == 16
    assert sum(status.class_counts.values()) == 32 and status.media_root == folder.resolve()

    # A copy of the project in the same state ranks the same way (same labels, settings and seed).
    copy = tmp_path / "copy"
    shutil.copytree(project.root, copy)
    shutil.rmtree(copy / "rounds" / "2")
    redo = LabelingProject.open(copy).query()
    assert not redo.reused and redo.round == 2 and redo.item_ids == r2.item_ids
    assert redo.csv_path.read_bytes() == r2.csv_path.read_bytes()
    assert LabelingProject.open(project.root).round_result(2).item_ids == r2.item_ids


# ------------------------------------------------------------------------------------ end to end (CLI)


def test_two_labelling_rounds_cli_npz(npz_file: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, truth = npz_file
    proj = tmp_path / "proj"
    result = runner.invoke(
        app, ["init-project", str(proj), "--images", str(path), "--classes", ",".join(CLASSES)]
    )
    assert result.exit_code == 0, result.output
    assert f"{N_IMAGES} images" in _out(result) and "--strategy kcenter-pixels" in _out(result)
    manifest = proj / "forgetting.toml"  # what a user would edit: a tiny model, 3 epochs
    text = manifest.read_text()
    text = text.replace("[model_options]\n", "[model_options]\nwidth = 4\nembed_dim = 16\n")
    manifest.write_text(
        text.replace("[train]\n", "[train]\nepochs = 3\n").replace("batch_size = 64", "batch_size = 32")
    )

    result = runner.invoke(app, ["query", str(proj)])
    assert result.exit_code == 2 and "kcenter-pixels" in _out(result) and "forgetting label" in _out(result)

    result = runner.invoke(app, ["query", str(proj), "--strategy", "random", "-n", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    round0 = proj / "rounds" / "0"
    with (round0 / "query.csv").open() as handle:
        items0 = [row["item"] for row in csv.DictReader(handle)]
    assert len(items0) == 12 and all(i.isdigit() for i in items0)
    tasks = json.loads((round0 / "label_studio.json").read_text())
    width = len(str(N_IMAGES - 1))
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d=media/{int(items0[0]):0{width}d}.png"
    assert (proj / "media" / f"{int(items0[0]):0{width}d}.png").is_file()  # npz rows are shown as PNGs

    answers = tmp_path / "answers.csv"
    answers.write_text("item,label\n" + "".join(f"{i},{truth[i]}\n" for i in items0))
    result = runner.invoke(app, ["label", str(proj), "--import", str(answers)])
    assert result.exit_code == 0 and "12 added" in _out(result), result.output
    ledger = (proj / "labels.jsonl").read_bytes()
    result = runner.invoke(app, ["label", str(proj), "--import", str(answers)])  # re-import: a no-op
    assert result.exit_code == 0 and "0 added, 12 already there" in _out(result)
    assert (proj / "labels.jsonl").read_bytes() == ledger

    result = runner.invoke(app, ["query", str(proj), "-n", "12"])
    assert result.exit_code == 0, result.output
    assert "round 1" in _out(result) and "gauss" in _out(result)
    export = _label_studio_export(
        proj / "rounds" / "1" / "label_studio.json", truth, tmp_path / "ls.json", keep_item=False
    )
    result = runner.invoke(app, ["label", str(proj), "--import", str(export)])
    assert result.exit_code == 0 and "12 added" in _out(result), result.output

    # A contradicting label: exit 2 with the item, both labels and the way out.
    item = items0[0]
    wrong = str((int(truth[item]) + 1) % 10)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"item,label\n{item},{wrong}\n")
    result = runner.invoke(app, ["label", str(proj), "--import", str(bad)])
    assert result.exit_code == 2
    assert repr(item) in _out(result) and repr(truth[item]) in _out(result) and "--overwrite" in _out(result)
    result = runner.invoke(app, ["label", str(proj), "--import", str(bad), "--overwrite"])
    assert result.exit_code == 0 and "1 overwritten" in _out(result)

    result = runner.invoke(app, ["status", str(proj)])
    assert result.exit_code == 0 and "labelled: 24; rounds queried: 2" in _out(result)
    result = runner.invoke(app, ["query", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "init-project" in _out(result)


# ------------------------------------------------------------------------------------ labels and ledger


def test_conflicts_idempotence_and_classes(png_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, truth = png_folder
    project = init_project(tmp_path / "p", folder, classes=CLASSES, **TINY)  # type: ignore[arg-type]
    items = sorted(truth)[:4]
    first = tmp_path / "first.csv"
    first.write_text(
        "filename,label,notes\n" + "".join(f"{i},{truth[i]},x\n" for i in items) + "part0/0002.png,,\n"
    )
    summary = project.import_labels(first)
    assert (summary.added, summary.skipped) == (4, 1)
    ledger = (project.root / "labels.jsonl").read_bytes()
    again = project.import_labels(first)
    assert (again.added, again.unchanged, again.changed) == (0, 4, False)
    assert (project.root / "labels.jsonl").read_bytes() == ledger

    # A different label for a labelled item: a named error listing item, old and new label; nothing changes.
    item = items[1]
    new = str((int(truth[item]) + 3) % 10)
    clash = tmp_path / "clash.csv"
    clash.write_text(f"item,label\n{items[2]},{truth[items[2]]}\n{folder / item},{new}\n")  # absolute path
    with pytest.raises(LabelConflictError) as err:
        project.import_labels(clash)
    message = str(err.value)
    assert repr(item) in message and repr(truth[item]) in message and repr(new) in message
    assert "overwrite" in message and "clash.csv line 3" in message
    assert (project.root / "labels.jsonl").read_bytes() == ledger
    summary = project.import_labels(clash, overwrite=True)
    assert (summary.overwritten, summary.unchanged) == (1, 1) and project.labels()[item].label == new

    # Two rows of one file that disagree.
    twice = tmp_path / "twice.csv"
    twice.write_text(f"item,label\n{items[0]},1\n{items[0]},2\n")
    with pytest.raises(LabelConflictError, match="different labels to the same image"):
        project.import_labels(twice)

    # Unknown images and, with fixed classes, unknown classes are refused with the rows named.
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("item,label\nnot/there.png,3\n")
    with pytest.raises(LabelImportError, match=r"unknown\.csv line 2: 'not/there\.png'"):
        project.import_labels(unknown)
    cat = tmp_path / "cat.csv"
    cat.write_text(f"item,label\n{sorted(truth)[10]},cat\n")
    with pytest.raises(LabelImportError, match="not among the project's classes"):
        project.import_labels(cat)
    with pytest.raises(ProjectError, match="oracle"):
        project.query(strategy="forgetting")
    with pytest.raises(ProjectError, match="already holds"):
        init_project(project.root, folder)
    with pytest.raises(LabelImportError):  # a bad labels file leaves no half-made project behind
        init_project(tmp_path / "bad", folder, classes=CLASSES, labels=unknown)
    assert not (tmp_path / "bad" / "forgetting.toml").exists()

    # Without fixed classes, classes come from the labels.
    open_project = init_project(tmp_path / "open", folder, **TINY)  # type: ignore[arg-type]
    summary = open_project.import_labels(cat)
    assert summary.new_classes == ["cat"] and open_project.settings.classes == ["cat"]
    assert LabelingProject.open(tmp_path / "open").settings.classes == ["cat"]
    assert re.search(r'classes = \["cat"\]', (tmp_path / "open" / "forgetting.toml").read_text())


def test_label_studio_export_parsing(tmp_path: Path) -> None:
    def task(tid: int, annotations: list[dict], item: str = "a.png") -> dict:
        return {
            "id": tid,
            "data": {"image": f"/data/local-files/?d=photos/{item}"},
            "annotations": annotations,
        }

    def ann(*choices: str, cancelled: bool = False) -> dict:
        value = {"choices": list(choices)}
        return {
            "was_cancelled": cancelled,
            "result": [{"from_name": "label", "type": "choices", "value": value}],
        }

    path = tmp_path / "export.json"
    path.write_text(json.dumps([task(1, [ann("cat")]), task(2, []), task(3, [ann("dog", cancelled=True)])]))
    parsed = read_label_file(path)
    assert [(r.ref, r.label) for r in parsed.rows] == [("/data/local-files/?d=photos/a.png", "cat")]
    assert parsed.skipped == 2
    path.write_text(json.dumps([task(7, [ann("cat"), ann("dog")])]))
    with pytest.raises(LabelConflictError, match=r"task 7.*annotations disagree"):
        read_label_file(path)
    path.write_text(json.dumps([task(8, [ann("cat", "dog")])]))
    with pytest.raises(LabelImportError, match=r"task 8.*exactly one"):
        read_label_file(path)
    path.write_text(json.dumps([{"id": 9, "annotations": []}]))
    with pytest.raises(LabelImportError, match="task 9: no image reference"):
        read_label_file(path)
    path.write_text(
        json.dumps([{"image": "/data/upload/1/0a1b2c3d-b.png", "id": 4, "label": "dog"}])
    )  # JSON_MIN
    assert [(r.ref, r.label) for r in read_label_file(path).rows] == [
        ("/data/upload/1/0a1b2c3d-b.png", "dog")
    ]
    (tmp_path / "x.txt").write_text("file;what\n")
    with pytest.raises(LabelImportError, match="needs an image column"):
        read_label_file(tmp_path / "x.txt")

    index = ItemIndex(["photos/a.png", "photos/b.png", "other/a.png"])
    assert index.resolve("/data/local-files/?d=photos/a.png") == "photos/a.png"
    assert index.resolve("/data/local-files/?d=root%2Fphotos%2Fb.png") == "photos/b.png"
    assert index.resolve("/data/upload/1/0a1b2c3d-b.png") == "photos/b.png"
    assert index.resolve("0a1b2c3d-a.png") is None  # two items are called a.png: ambiguous
    rows = ItemIndex(["0", "1", "2"], ["0.png", "1.png", "2.png"])
    assert rows.resolve("2") == "2" and rows.resolve("media/1.png") == "1" and rows.resolve("002") == "2"
