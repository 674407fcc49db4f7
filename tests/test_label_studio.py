"""Label Studio, without the server: the brush RLE (against the SDK's converter when it is installed), masks
and labels in Label Studio's formats both ways, and the live backend of `forgetting serve` (its calls, the
inbox, retraining every k labels, restarts), in-process and over HTTP.

The real Label Studio server: tests/test_label_studio_server.py (slow; `make test-label-studio`).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from forgetting import LabelConflictError, LabelImportError, ProjectError
from forgetting.annotate import LabelingProject, init_project, rle
from forgetting.annotate import label_studio as ls
from forgetting.annotate.live import LiveProject, LiveSettings

CLASSES = ["sand", "shale", "salt"]
H, W = 16, 20
SEG = {"model_options": {"base": 4, "depth": 2}, "train": {"epochs": 2, "batch_size": 4}, "device": "cpu"}
CLS = {
    "model_options": {"width": 4, "embed_dim": 16},
    "train": {"epochs": 2, "batch_size": 8},
    "device": "cpu",
}


def _bits(text: str) -> list[int]:
    """Bytes from a string of 0/1 (spaces ignored), zero-padded to whole bytes."""
    bits = text.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


# The rle-pack format, written out by hand: 7 values, 8-bit words, sizes 3/4/8/16; a run of three 5s
# (flag 1, size 0, length-1 = 2 in 3 bits, word), then a literal of four words 1, 2, 3, 4 (flag 0, size 0,
# length-1 = 3, four words). Label Studio's editor writes literals like this one (the SDK's encoder does not).
SPEC_RLE = _bits(
    f"{7:032b} {7:05b} {2:04b}{3:04b}{7:04b}{15:04b} 1 00 010 {5:08b} 0 00 011 {1:08b}{2:08b}{3:08b}{4:08b}"
)
SPEC_VALUES = [5, 5, 5, 1, 2, 3, 4]


def _masks(seed: int) -> list[np.ndarray]:
    """Random test masks: noise, blobs, full and empty layers, odd sizes, and runs longer than 2**16."""
    rng = np.random.default_rng(seed)
    out = [
        rng.random((h, w)) < p
        for (h, w), p in [((1, 1), 0.5), ((3, 7), 0.5), ((24, 12), 0.3), ((64, 48), 0.9)]
    ]
    blob = np.zeros((130, 170), bool)
    blob[20:90, 30:160] = True
    out += [blob, np.ones((300, 300), bool), np.zeros((5, 9), bool)]
    return out


# ------------------------------------------------------------------------------------------ the RLE


def test_rle_decodes_the_format_as_specified_and_round_trips() -> None:
    assert rle.decode(SPEC_RLE).tolist() == SPEC_VALUES
    for mask in _masks(0):
        code = rle.encode_mask(mask)
        assert all(0 <= b <= 255 for b in code)
        assert np.array_equal(rle.decode_alpha(code, *mask.shape), mask)
    values = np.random.default_rng(1).integers(0, 256, 5000).astype(np.uint8)
    values[1000 : 80000 % 5000] = 7
    assert np.array_equal(rle.decode(rle.encode(values)), values)
    long_run = np.full(3 * (1 << 16) + 5, 9, dtype=np.uint8)  # split into pieces of 2**16
    assert np.array_equal(rle.decode(rle.encode(long_run)), long_run)


def test_rle_errors_name_the_problem() -> None:
    code = rle.encode_mask(np.eye(8, dtype=bool))
    with pytest.raises(LabelImportError, match="truncated"):
        rle.decode(code[: len(code) // 2])
    with pytest.raises(LabelImportError, match="too short"):
        rle.decode(code[:3])
    with pytest.raises(LabelImportError, match="byte values"):
        rle.decode([0, 300, 2])
    with pytest.raises(LabelImportError, match=r"RGBA layer of 8x9 .* do not match"):
        rle.decode_alpha(code, 8, 9)


def test_rle_against_label_studio_sdk() -> None:
    """Random masks -> our encoder -> the SDK's decoder -> the same masks, and the SDK's encoder -> our
    decoder -> the same masks; our bytes equal the SDK's (which may end in one more zero byte)."""
    brush = pytest.importorskip(
        "label_studio_sdk.converter.brush",
        reason="label-studio-sdk is not installed (`make env` installs it)",
    )
    for mask in _masks(2):
        ours = rle.encode_mask(mask)
        theirs = brush.mask2rle(mask.astype(np.uint8) * 255)
        assert ours == theirs[: len(ours)] and not any(theirs[len(ours) :])
        decoded = np.reshape(brush.decode_rle(ours), [*mask.shape, 4])[:, :, 3]
        assert np.array_equal(decoded, mask.astype(np.uint8) * 255)
        assert np.array_equal(rle.decode_alpha(theirs, *mask.shape), mask)
    assert brush.decode_rle(SPEC_RLE).tolist() == SPEC_VALUES == rle.decode(SPEC_RLE).tolist()


# ------------------------------------------------------------------------------------------ formats


def test_brush_results_round_trip_overlaps_and_errors() -> None:
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 3, (H, W))
    mask[:4, :5] = 255  # unlabelled
    results = ls.brush_results(mask, CLASSES)
    assert [r["value"]["brushlabels"] for r in results] == [[c] for c in CLASSES]
    class_ids = {c: k for k, c in enumerate(CLASSES)}
    assert np.array_equal(ls.brush_mask(results, class_ids, ignore_index=255, where="t"), mask)
    assert ls.brush_mask([ls.choice_result("sand")], class_ids, ignore_index=255, where="t") is None

    # A later region painted over an earlier one wins (Label Studio draws it on top).
    over = ls.brush_results(np.ones((H, W), int), CLASSES)[0]
    fixed = ls.brush_mask([over, *results], class_ids, ignore_index=255, where="t")
    assert np.array_equal(fixed, np.where(mask == 255, 1, mask))

    with pytest.raises(LabelImportError, match="'gravel' is not among the project's classes"):
        bad = json.loads(json.dumps(results))
        bad[0]["value"]["brushlabels"] = ["gravel"]
        ls.brush_mask(bad, class_ids, ignore_index=255, where="task 3")
    with pytest.raises(LabelImportError, match="exactly one class"):
        bad[0]["value"]["brushlabels"] = []
        ls.brush_mask(bad, class_ids, ignore_index=255, where="task 3")
    with pytest.raises(LabelImportError, match=r"20 pixel\(s\) are not painted.*no ignore index"):
        ls.brush_mask(results, class_ids, ignore_index=None, where="task 3")
    assert "<BrushLabels" in ls.brush_config(CLASSES, ["#000000"] * 3)


@pytest.fixture
def sections(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """12 grayscale 16x20 images with 3-class masks (class borders that differ per image)."""
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(12):
        mask = np.zeros((H, W), np.uint8)
        mask[:, : 4 + i] = 1
        mask[10 + i % 4 :, :] = 2
        image = (mask * 90 + rng.integers(0, 30, mask.shape)).astype(np.uint8)
        path = tmp_path / "data" / "sections" / f"s{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        truth[path.name] = mask
    return tmp_path / "data" / "sections", truth


def _export(tasks: list[dict[str, Any]], answers: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A Label Studio JSON export of ``tasks`` with one annotation per answered item (and a cancelled one)."""
    out = []
    for k, task in enumerate(tasks):
        item = task["data"]["item"]
        annotations = [{"id": 1, "was_cancelled": True, "result": []}]
        if item in answers:
            annotations.append({"id": 2, "was_cancelled": False, "result": answers[item]})
        out.append({"id": 10 + k, "data": task["data"], "annotations": annotations, "predictions": []})
    return out


def test_segmentation_masks_from_a_label_studio_export(
    sections: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, truth = sections
    project = init_project(tmp_path / "p", folder, classes=CLASSES, task="segmentation", query_size=4, **SEG)  # type: ignore[arg-type]
    assert project.label_studio_document_root == folder.parent
    tasks = json.loads(project.export_label_studio_tasks().read_text())
    assert [t["data"]["image"] for t in tasks[:1]] == ["/data/local-files/?d=sections/s00.png"]
    items = sorted(truth)
    answers = {i: ls.brush_results(truth[i], CLASSES) for i in items[:5]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_export(tasks, answers)))
    summary = project.import_labels(export)
    assert (summary.added, summary.skipped) == (5, 7)
    assert all(np.array_equal(project.load_mask(i), truth[i]) for i in items[:5])
    again = project.import_labels(export)  # idempotent
    assert (again.added, again.unchanged, again.changed) == (0, 5, False)

    # Same checks as for mask files: a changed mask is a conflict, a wrong size or class is refused.
    edited = truth[items[0]].copy()
    edited[0, :3] = 0
    export.write_text(json.dumps(_export(tasks, {items[0]: ls.brush_results(edited, CLASSES)})))
    with pytest.raises(LabelConflictError, match=r"(?s)differs in 3 of 320 pixels.*--overwrite"):
        project.import_labels(export)
    assert project.import_labels(export, overwrite=True).overwritten == 1
    wrong = ls.brush_results(np.zeros((W, H), int), CLASSES)
    export.write_text(json.dumps(_export(tasks, {items[6]: wrong})))
    with pytest.raises(LabelImportError, match=r"(?s)the mask is 20x16 .* is 16x20.*nothing was imported"):
        project.import_labels(export)
    gravel = ls.brush_results(truth[items[7]], CLASSES)
    gravel[0]["value"]["brushlabels"] = ["gravel"]
    export.write_text(json.dumps(_export(tasks, {items[7]: gravel})))
    with pytest.raises(LabelImportError, match="'gravel' is not among"):
        project.import_labels(export)
    assert set(project.labels()) == set(items[:5])


def test_export_tasks_of_an_array_source(tmp_path: Path) -> None:
    """Every row of an .npz becomes a task whose image is a PNG under <project>/media, served from the
    project directory (Label Studio's document root: the folder above media/)."""
    images = np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "rows.npz", images=images)
    project = init_project(tmp_path / "p", tmp_path / "rows.npz", classes=["a", "b"], device="cpu")
    tasks = json.loads(project.export_label_studio_tasks().read_text())
    assert [t["data"] for t in tasks[:2]] == [
        {"image": "/data/local-files/?d=media/00.png", "item": "0"},
        {"image": "/data/local-files/?d=media/01.png", "item": "1"},
    ]
    assert project.label_studio_document_root == project.root and project.media_root == project.root / "media"
    for k, task in enumerate(tasks):
        png = np.asarray(Image.open(project.root / "media" / task["data"]["image"].split("media/")[1]))
        assert np.array_equal(png, images[k])
    assert (
        project.import_label_studio_tasks(
            [
                {
                    "id": 1,
                    "data": tasks[3]["data"],
                    "annotations": [{"id": 1, "result": [ls.choice_result("b")]}],
                }
            ],
            source="webhook",
        ).added
        == 1
    )
    assert project.labels()["3"].label == "b"


# ------------------------------------------------------------------------------------------ live


def _annotation_event(
    item: str, result: list[dict[str, Any]], k: int, action: str = "ANNOTATION_CREATED"
) -> dict:
    """A webhook payload as Label Studio sends it (annotation and task serialised, the project omitted)."""
    task = {"id": 100 + k, "data": {"image": f"/data/local-files/?d=sections/{item}", "item": item}}
    annotation = {"id": 500 + k, "task": 100 + k, "result": result, "was_cancelled": False}
    return {"action": action, "annotation": annotation, "task": task, "project": {"id": 1}}


def test_live_segmentation_imports_webhooks_retrains_and_restarts(
    sections: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, truth = sections
    project = init_project(tmp_path / "p", folder, classes=CLASSES, task="segmentation", query_size=4, **SEG)  # type: ignore[arg-type]
    live = LiveProject(project.root, LiveSettings(every=3, n=6))
    assert live.model_version() == "forgetting-no-round"
    assert live.step()  # no labels: a cold-start round
    first = project.round_result(0)
    assert first.strategy == "kcenter-pixels" and len(first.items) == 6
    assert live.predict({"tasks": [{"id": 1, "data": {"item": first.items[0].item}}]})["results"][0] == {
        "model_version": live.model_version(),
        "score": None,  # a model-free round: a ranking but no prediction
        "result": [],
    }
    assert not live.step()  # nothing new: no round

    items = first.item_ids
    for k, item in enumerate(items[:2]):
        assert live.webhook(_annotation_event(item, ls.brush_results(truth[item], CLASSES), k))["queued"] == 1
    assert not live.step() and live.health()["labels"] == 2  # imported; 2 < every
    bad = ls.brush_results(truth[items[2]], CLASSES)
    bad[1]["value"]["brushlabels"] = ["gravel"]
    live.webhook(_annotation_event(items[2], bad, 2))
    live.webhook({"action": "PROJECT_UPDATED", "project": {"id": 1}})  # acknowledged, ignored
    assert not live.step()
    health = live.health()
    assert (health["labels"], health["rejected"], health["inbox"]) == (2, 1, 0)
    (reason,) = (project.root / "inbox" / "rejected").glob("*.error.txt")
    assert "'gravel' is not among" in reason.read_text()

    # The third label: a round trains on the 3 masks (GauSS) and ranks; predictions are its masks.
    live.webhook(_annotation_event(items[2], ls.brush_results(truth[items[2]], CLASSES), 3))
    assert live.step()
    second = project.round_result(1)
    assert (
        second.strategy == "gauss"
        and second.n_labeled == 3
        and live.health()["model_version"].startswith("forgetting-round-1-gauss")
    )
    assert all(np.array_equal(project.load_mask(i), truth[i]) for i in items[:3])
    tasks = [
        {"id": k, "data": {"image": f"/data/upload/1/abcd1234-{r.item}"}} for k, r in enumerate(second.items)
    ]
    results = live.predict({"tasks": tasks})["results"]
    maps = np.load(second.maps_path)
    for k, (r, prediction) in enumerate(zip(second.items, results, strict=True)):
        assert prediction["score"] == ls.rank_score(r.rank, len(second.items))
        painted = np.full((H, W), 255)
        for result in prediction["result"]:
            region = rle.decode_alpha(result["value"]["rle"], H, W)
            painted[region] = CLASSES.index(result["value"]["brushlabels"][0])
        assert np.array_equal(painted, maps["pred"][k])
    stored = json.loads(project.label_studio_tasks_path.read_text())  # every image, with this round's masks
    assert len(stored) == 12 and sum("predictions" in t for t in stored) == 6

    # An updated annotation replaces the mask; a crash before the import loses nothing: a new backend on
    # the same directory imports what the old one stored, and the same event twice changes nothing.
    edited = truth[items[0]].copy()
    edited[:2] = 2
    event = _annotation_event(items[0], ls.brush_results(edited, CLASSES), 0, action="ANNOTATION_UPDATED")
    live.webhook(event)
    live.webhook(event)
    del live
    restarted = LiveProject(project.root, LiveSettings(every=3, n=6))
    assert restarted.health()["inbox"] == 2 and restarted.import_inbox() == 2
    assert np.array_equal(project.load_mask(items[0]), edited) and project.status().new_labels == 1


@pytest.fixture
def digits(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    from forgetting.annotate import write_png
    from forgetting.data import load_dataset

    train = load_dataset("mnist-5k", seed=0).train
    truth = {}
    for i in range(40):
        item = f"d{i:02d}.png"
        write_png(tmp_path / "data" / "digits" / item, train.images[i])
        truth[item] = str(int(train.labels[i]))
    return tmp_path / "data" / "digits", truth


def test_live_classification_setup_predict_webhook(
    digits: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, truth = digits
    classes = [str(c) for c in range(10)]
    project = init_project(tmp_path / "p", folder, classes=classes, query_size=8, **CLS)  # type: ignore[arg-type]
    project.add_labels({i: truth[i] for i in sorted(truth)[:10]})
    live = LiveProject(project.root, LiveSettings(every=4))
    assert live.step()
    round0 = project.round_result(0)
    assert round0.strategy == "gauss" and round0.n_labeled == 10

    config = project.label_studio_config_path.read_text()
    assert live.setup({"project": "3.1700000000", "schema": config}) == {
        "model_version": live.model_version()
    }
    with pytest.raises(ProjectError, match=r"needs a <Choices name=\"label\" toName=\"image\">"):
        live.setup({"schema": config.replace('name="label"', 'name="digit"')})
    with pytest.raises(ProjectError, match=r"classes \['ten'\] that the project does not have"):
        live.setup(
            {"schema": config.replace('<Choice value="9"/>', '<Choice value="9"/><Choice value="ten"/>')}
        )

    results = live.predict(
        {"tasks": [{"id": k, "data": {"item": r.item}} for k, r in enumerate(round0.items)]}
    )
    for r, prediction in zip(round0.items, results["results"], strict=True):
        assert prediction["result"] == [ls.choice_result(r.predicted)]
        assert prediction["score"] == (8 - r.rank + 1) / 8
    labelled = sorted(truth)[0]
    assert live.predict({"tasks": [{"data": {"item": labelled}}]})["results"][0]["score"] is None

    for k, r in enumerate(round0.items[:4]):
        live.webhook(_annotation_event(r.item, [ls.choice_result(truth[r.item])], k))
    wrong = round0.items[0].item
    other = str((int(truth[wrong]) + 1) % 10)
    live.webhook(_annotation_event(wrong, [ls.choice_result(other)], 9))  # a second, disagreeing annotator
    assert live.step()
    health = live.health()
    assert (health["rounds"], health["labels"], health["rejected"]) == (2, 14, 1)
    assert project.labels()[wrong].label == truth[wrong]
    assert project.labels()[wrong].source == "label-studio:annotation_created"
    assert "contradict" in next((project.root / "inbox" / "rejected").glob("*.error.txt")).read_text()
    assert health["calls"]["webhook:ANNOTATION_CREATED"] == 5 and health["calls"]["setup"] == 3


# ------------------------------------------------------------------------------------------ over HTTP


@pytest.fixture
def http_backend(digits: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[str, LiveProject]]:
    pytest.importorskip("uvicorn", reason="the labelstudio extra is not installed (`make env` installs it)")
    import uvicorn

    from forgetting.annotate.serve import create_app

    folder, truth = digits
    project = init_project(tmp_path / "p", folder, classes=[str(c) for c in range(10)], query_size=6, **CLS)  # type: ignore[arg-type]
    project.add_labels({i: truth[i] for i in sorted(truth)[:10]})
    live = LiveProject(project.root, LiveSettings(every=2))
    server = uvicorn.Server(uvicorn.Config(create_app(live), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", live
    finally:
        server.should_exit = True
        thread.join(30)


def _call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _until(url: str, predicate: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, health = _call(url + "/health")
        if predicate(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


def test_serve_over_http(http_backend: tuple[str, LiveProject], digits: tuple[Path, dict[str, str]]) -> None:
    url, live = http_backend
    _, truth = digits
    health = _until(url, lambda h: h["rounds"] == 1 and not h["training"])  # the worker ran round 0
    assert health["status"] == "UP" and health["model_version"].startswith("forgetting-round-0-gauss")
    assert _call(url + "/")[0] == 200
    project = LabelingProject.open(live.root)
    config = project.label_studio_config_path.read_text()
    assert _call(url + "/setup", {"project": "1.1", "schema": config}) == (
        200,
        {"model_version": health["model_version"]},
    )
    status, answer = _call(url + "/setup", {"project": "1.1", "schema": "<View><Image name='image'/></View>"})
    assert status == 400 and "needs a <Choices" in answer["error"]
    ranked = project.round_result(0).items
    status, answer = _call(url + "/predict", {"tasks": [{"id": 1, "data": {"item": ranked[0].item}}]})
    assert status == 200 and answer["results"][0]["score"] == 1.0
    assert _call(url + "/predict", {"tasks": "all"})[0] == 400

    for k, r in enumerate(ranked[:2]):
        status, answer = _call(
            url + "/webhook", _annotation_event(r.item, [ls.choice_result(truth[r.item])], k)
        )
        assert (status, answer["queued"]) == (201, 1)
    health = _until(url, lambda h: h["rounds"] == 2 and not h["training"] and h["inbox"] == 0)
    assert health["labels"] == 12 and health["model_version"].startswith("forgetting-round-1-gauss")
    assert _call(url + "/webhook", {"action": "START_TRAINING", "project": {"id": 1}})[0] == 201


def test_serve_needs_the_extra_or_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    from forgetting.annotate import serve

    real_import = builtins.__import__

    def no_uvicorn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("uvicorn", "starlette"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    with pytest.raises(ProjectError, match=r"pip install 'forgetting\[labelstudio\]'"):
        serve.serve(tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)
