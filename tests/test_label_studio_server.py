"""A real Label Studio against `forgetting serve`, for classification and for segmentation (slow).

One Label Studio server (pip `label-studio` in its own venv, `.venv-labelstudio`, built by
`make label-studio-env`; SQLite in a temporary data directory; user and API token from the environment) runs
for the module on a local port. Each test starts `forgetting serve` on its project, then, through Label
Studio's SDK (benchmarks/label_studio/client.py, run in Label Studio's venv):

1. creates a Label Studio project with the project's interface, a local storage of its images, imports every
   image as a task (with the first round's pre-annotations) and connects the backend as its ML backend
   (Label Studio calls /health and /setup);
2. posts annotations the way the labelling interface does (brush masks encoded by the SDK's own encoder);
   Label Studio sends them to /webhook, the backend imports them and, after k labels, retrains and re-ranks,
   then selects the new round in Label Studio and retrieves its predictions (Label Studio calls /predict);
3. reads the tasks back sorted by Label Studio's "Prediction score" and decodes the stored brush predictions
   with the SDK's decoder, and exports the annotations as JSON.

Checks: the labels and masks arrived intact (in the ledger through the webhooks, and through the export, in
the same project (nothing changes) and in a fresh one); Label Studio's order is the new round's ranking; the
masks Label Studio stores are the model's; the backend answered Label Studio's own calls.

Run: `make test-label-studio` (CI: .ci/run); it skips when the Label Studio venv is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from forgetting.annotate import init_project, write_png
from forgetting.annotate import label_studio as ls
from forgetting.data import load_dataset

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "label_studio"
VENV = Path(os.environ.get("FORGETTING_LABEL_STUDIO_VENV", BENCH.parents[1] / ".venv-labelstudio"))
TINY_CLS = {
    "model_options": {"width": 4, "embed_dim": 16},
    "train": {"epochs": 3, "batch_size": 8},
    "device": "cpu",
}
TINY_SEG = {
    "model_options": {"base": 4, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4},
    "device": "cpu",
}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"label_studio_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


servers = _load("servers")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (VENV / "bin" / "label-studio").is_file():
        pytest.skip(f"no Label Studio venv at {VENV}: build it with `make label-studio-env`")
    pytest.importorskip("uvicorn", reason="the labelstudio extra is not installed (`make env` installs it)")
    root = tmp_path_factory.mktemp("label-studio")
    documents = root / "documents"  # the image folders of both tests live under Label Studio's document root
    documents.mkdir()
    with servers.LabelStudioServer(root / "data", documents, venv=VENV) as server:
        print(f"\nLabel Studio {server.url} answered /health after {server.startup_seconds:.0f} s")
        yield server


def _labelled(server: Any, project_id: int, version: str, timeout: float = 120) -> dict[str, Any]:
    """Label Studio's predictions, once it shows those of model ``version`` (the backend selects it after
    the round; the request may still be under way)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = server.client(
            "predict", "--project", str(project_id), "--decoded", str(server.data_dir / "d.npz")
        )
        if answer["model_version"] == version or time.monotonic() > deadline:
            return answer
        time.sleep(1)


def _check_calls(health: dict[str, Any], webhooks: int, token: str) -> None:
    """The backend answered Label Studio's own calls, and reached its API with the ``token`` it was meant
    to use (``settings``: LABEL_STUDIO_API_KEY; ``setup``: the one Label Studio sent)."""
    assert [v["token"] for v in health["label_studio"].values()] == [token], health["label_studio"]
    calls = health["calls"]
    assert calls.get("setup", 0) >= 1 and calls.get("predict", 0) >= 1, calls
    assert calls.get("webhook:ANNOTATION_CREATED", 0) == webhooks, calls
    assert health["rejected"] == 0 and health["last_error"] is None, health


def test_classification_with_a_real_label_studio(label_studio: Any, tmp_path: Path) -> None:
    train = load_dataset("mnist-5k", seed=0).train
    folder = label_studio.document_root / "digits"
    truth = {}
    for i in range(48):
        item = f"d{i:02d}.png"
        write_png(folder / item, train.images[i])
        truth[item] = str(int(train.labels[i]))
    classes = [str(c) for c in range(10)]
    project = init_project(tmp_path / "digits", folder, classes=classes, query_size=8, **TINY_CLS)  # type: ignore[arg-type]
    assert project.label_studio_document_root == label_studio.document_root
    project.add_labels({i: truth[i] for i in sorted(truth)[:10]})

    # This backend reaches Label Studio's API with a personal access token from the environment (the
    # segmentation test's uses the token Label Studio sends with /setup).
    pat = label_studio.client("token")["personal_access_token"]
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": pat}
    with servers.BackendServer(project.root, "--every", "4", "-n", "8", env=env) as backend:
        backend.wait(lambda h: h["rounds"] == 1 and not h["training"], what="round 0")
        setup = label_studio.connect(project, backend, "forgetting digits")
        assert setup["ml_state"] == "CO" and setup["imported_predictions"] == 8  # connected; pre-annotated
        round0 = project.round_result(0)

        answered = round0.item_ids[:4]
        answers = tmp_path / "answers.json"
        answers.write_text(json.dumps({"items": answered, "labels": {i: truth[i] for i in answered}}))
        label_studio.client("annotate", "--project", str(setup["project"]), "--answers", str(answers))
        health = backend.wait(
            lambda h: h["rounds"] == 2 and h["labels"] == 14 and h["inbox"] == 0 and not h["training"],
            what="the round after 4 labels",
        )
        seen = _labelled(label_studio, setup["project"], health["model_version"])
        export = tmp_path / "export.json"
        label_studio.client("export", "--project", str(setup["project"]), "--out", str(export))
        _check_calls(backend.health(), webhooks=4, token="settings")

    labels = project.labels()
    assert all(labels[i].label == truth[i] and labels[i].source.startswith("label-studio") for i in answered)
    round1 = project.round_result(1)
    assert round1.n_labeled == 14 and seen["model_version"] == health["model_version"]
    assert seen["ordered"][:8] == round1.item_ids  # Label Studio sorts by our rank score
    for r in round1.items:
        assert seen["predictions"][r.item] == {
            "score": ls.rank_score(r.rank, 8),
            "model_version": health["model_version"],
            "choice": r.predicted,
        }
    again = project.import_labels(export)  # the webhooks imported them already: nothing changes
    assert (again.added, again.unchanged) == (0, 4)
    fresh = init_project(tmp_path / "fresh", folder, classes=classes, **TINY_CLS)  # type: ignore[arg-type]
    assert fresh.import_labels(export).added == 4
    assert {i: e.label for i, e in fresh.labels().items()} == {i: truth[i] for i in answered}


def test_segmentation_with_a_real_label_studio(label_studio: Any, tmp_path: Path) -> None:
    data = load_dataset("seismic-synthetic", inlines=12, crosslines=12, depth=24, seed=0)
    images = data.train.images[:, 0].numpy()
    masks = data.train.targets.numpy().astype(np.uint8)
    classes = list(data.classes)
    folder = label_studio.document_root / "sections"
    truth = {}
    for i in range(images.shape[0]):
        item = f"s{i:03d}.png"
        write_png(folder / item, images[i][None])
        truth[item] = masks[i]
    project = init_project(
        tmp_path / "sections",
        folder,
        classes=classes,
        task="segmentation",
        query_size=6,
        **TINY_SEG,  # type: ignore[arg-type]
    )
    project.add_masks({i: truth[i] for i in sorted(truth)[:3]})

    with servers.BackendServer(project.root, "--every", "3", "-n", "6") as backend:
        backend.wait(lambda h: h["rounds"] == 1 and not h["training"], what="round 0")
        setup = label_studio.connect(project, backend, "forgetting sections")
        assert setup["ml_state"] == "CO" and setup["imported_predictions"] == 6

        answered = project.round_result(0).item_ids[:3]
        np.savez(
            tmp_path / "answers.npz", masks=np.stack([truth[i] for i in answered]), items=np.array(answered)
        )
        answers = tmp_path / "answers.json"
        answers.write_text(
            json.dumps({"items": answered, "masks": str(tmp_path / "answers.npz"), "classes": classes})
        )
        label_studio.client("annotate", "--project", str(setup["project"]), "--answers", str(answers))
        health = backend.wait(
            lambda h: h["rounds"] == 2 and h["labels"] == 6 and h["inbox"] == 0 and not h["training"],
            what="the round after 3 masks",
        )
        seen = _labelled(label_studio, setup["project"], health["model_version"])
        decoded = np.load(label_studio.data_dir / "d.npz")
        export = tmp_path / "export.json"
        label_studio.client("export", "--project", str(setup["project"]), "--out", str(export))
        _check_calls(backend.health(), webhooks=3, token="setup")

    # The masks the annotator painted (encoded by Label Studio's SDK) are the project's, pixel for pixel.
    assert all(np.array_equal(project.load_mask(i), truth[i]) for i in answered)
    round1 = project.round_result(1)
    assert seen["model_version"] == health["model_version"]  # the backend selected its new round
    assert seen["ordered"][:6] == round1.item_ids
    assert [seen["predictions"][i]["score"] for i in round1.item_ids] == [
        ls.rank_score(k, 6) for k in range(1, 7)
    ]
    # The pre-annotations Label Studio stores, decoded by its SDK, are the round's predicted masks.
    maps = np.load(round1.maps_path)
    stored = {str(key): decoded[f"m{k}"] for k, key in enumerate(decoded["keys"])}
    for k, item in enumerate(round1.item_ids):
        painted = np.full(maps["pred"][k].shape, 255, dtype=np.int64)
        for key, alpha in stored.items():
            name, label = key.split("|")
            if name == item:
                painted[alpha > 0] = classes.index(label)
        assert np.array_equal(painted, maps["pred"][k]), item
    again = project.import_labels(export)
    assert (again.added, again.unchanged) == (0, 3)
    fresh = init_project(tmp_path / "fresh", folder, classes=classes, task="segmentation", **TINY_SEG)  # type: ignore[arg-type]
    assert fresh.import_labels(export).added == 3
    assert all(np.array_equal(fresh.load_mask(i), truth[i]) for i in answered)
