"""Label Studio's side of the real-server test and of the screenshot: runs in the Label Studio venv
(`make label-studio-env`, .venv-labelstudio), where label-studio and its label-studio-sdk live, and talks to
the server only through the SDK. The test (in the project's venv) calls it as a subprocess; every
subcommand prints one JSON object on stdout.

    python client.py setup    --url URL --token TOKEN --title T --config XML --tasks JSON
                              --media DIR --backend URL
    python client.py annotate --url URL --token TOKEN --project ID --answers JSON
    python client.py predict  --url URL --token TOKEN --project ID [--decoded OUT.npz] [--retrieve]
    python client.py export   --url URL --token TOKEN --project ID --out JSON

Segmentation answers are encoded with the SDK's own brush encoder (label_studio_sdk.converter.brush.mask2rle),
and the masks of the predictions Label Studio stored are decoded with the SDK's decoder (decode_rle): our RLE
is checked against Label Studio's code in both directions, through the server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk import LabelStudio


def _client(args: argparse.Namespace) -> LabelStudio:
    return LabelStudio(base_url=args.url, api_key=args.token)


def _brush(mask: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """The brush results of a mask, as Label Studio's SDK encodes them (one region per class present)."""
    from label_studio_sdk.converter.brush import mask2rle

    height, width = mask.shape
    results = []
    for k, name in enumerate(classes):
        region = mask == k
        if not region.any():
            continue
        results.append(
            {
                "id": f"r{k}",
                "from_name": "label",
                "to_name": "image",
                "type": "brushlabels",
                "origin": "manual",
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": mask2rle((region * 255).astype(np.uint8)),
                    "brushlabels": [name],
                },
            }
        )
    return results


def _get(obj: Any, key: str) -> Any:
    """A field of an SDK object or of a plain dict."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _tasks(ls: LabelStudio, project: int, *, ordering: list[str] | None = None) -> list[Any]:
    query = json.dumps({"ordering": ordering}) if ordering else None
    return list(ls.tasks.list(project=project, fields="all", query=query, page_size=100))


def setup(args: argparse.Namespace) -> dict[str, Any]:
    ls = _client(args)
    config = Path(args.config).read_text(encoding="utf-8")
    project = ls.projects.create(title=args.title, label_config=config)
    storage = ls.import_storage.local.create(
        project=project.id, path=str(Path(args.media).resolve()), use_blob_urls=True, title="images"
    )
    tasks = json.loads(Path(args.tasks).read_text(encoding="utf-8"))
    ls.projects.import_tasks(id=project.id, request=tasks)
    backend = ls.ml.create(project=project.id, url=args.backend, title="forgetting", is_interactive=False)
    ml = ls.ml.get(id=backend.id)
    listed = _tasks(ls, project.id)
    return {
        "project": project.id,
        "storage": storage.id,
        "ml": backend.id,
        "ml_state": str(ml.state),
        "ml_model_version": ml.model_version,
        "tasks": {t.data["item"]: t.id for t in listed},
        "imported_predictions": sum(len(t.predictions or []) for t in listed),
    }


def annotate(args: argparse.Namespace) -> dict[str, Any]:
    """Post one annotation per answered task, as the labelling interface does (POST
    /api/tasks/<id>/annotations/ with the result, the lead time, and the prediction it started from)."""
    ls = _client(args)
    answers = json.loads(Path(args.answers).read_text(encoding="utf-8"))
    masks = None
    if answers.get("masks"):
        with np.load(answers["masks"]) as archive:
            masks = {str(item): archive["masks"][k] for k, item in enumerate(archive["items"])}
    by_item = {t.data["item"]: t for t in _tasks(ls, args.project)}
    created = {}
    for item in answers["items"]:
        task = by_item[item]
        if masks is not None:
            result = _brush(masks[item], answers["classes"])
        else:
            result = [
                {
                    "id": "c0",
                    "from_name": "label",
                    "to_name": "image",
                    "type": "choices",
                    "origin": "manual",
                    "value": {"choices": [answers["labels"][item]]},
                }
            ]
        parent = _get(task.predictions[-1], "id") if task.predictions else None
        kwargs = {"parent_prediction": parent} if parent is not None else {}
        annotation = ls.annotations.create(
            id=task.id, result=result, was_cancelled=False, ground_truth=False, lead_time=2.5, **kwargs
        )
        created[item] = annotation.id
    return {"annotations": created}


def predict(args: argparse.Namespace) -> dict[str, Any]:
    """The predictions Label Studio holds: the tasks sorted by prediction score as Label Studio sorts them
    (Data Manager ordering ``-tasks:predictions_score``), each task's prediction of the project's model
    version, and the brush masks of those predictions decoded with the SDK's decoder. With ``--retrieve``,
    first run the Data Manager action "Retrieve predictions" (Label Studio calls the backend's /setup and
    /predict)."""
    from label_studio_sdk.converter.brush import decode_rle

    ls = _client(args)
    if args.retrieve:
        ls.actions.create(id="retrieve_tasks_predictions", project=args.project, selected_items={"all": True})
    version = ls.projects.get(id=args.project).model_version
    ml = next(iter(ls.ml.list(project=args.project)))
    ordered = _tasks(ls, args.project, ordering=["-tasks:predictions_score"])
    predictions = {}
    decoded: dict[str, np.ndarray] = {}
    for task in ordered:
        current = [p for p in task.predictions or [] if _get(p, "model_version") == version]
        if not current:
            continue
        p = current[-1]
        predictions[task.data["item"]] = {
            "score": _get(p, "score"),
            "model_version": _get(p, "model_version"),
        }
        for r in _get(p, "result") or []:
            if r.get("type") == "brushlabels":
                h, w = r["original_height"], r["original_width"]
                alpha = np.reshape(decode_rle(r["value"]["rle"]), [h, w, 4])[:, :, 3]
                decoded[f"{task.data['item']}|{r['value']['brushlabels'][0]}"] = alpha
            elif r.get("type") == "choices":
                predictions[task.data["item"]]["choice"] = r["value"]["choices"][0]
    if args.decoded:
        keys = sorted(decoded)
        np.savez(
            args.decoded,
            keys=np.array(keys, dtype=str),
            **{f"m{k}": decoded[key] for k, key in enumerate(keys)},
        )
    return {
        "model_version": version,
        "ml_model_version": ml.model_version,
        "ml_state": str(ml.state),
        "ordered": [t.data["item"] for t in ordered],
        "annotated": [t.data["item"] for t in ordered if t.annotations],
        "predictions": predictions,
    }


def export(args: argparse.Namespace) -> dict[str, Any]:
    ls = _client(args)
    chunks = ls.projects.exports.download_sync(id=args.project, export_type="JSON", download_all_tasks=False)
    data = b"".join(chunks)
    Path(args.out).write_bytes(data)
    return {"tasks": len(json.loads(data)), "path": args.out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "annotate", "predict", "export"):
        sub = commands.add_parser(name)
        sub.add_argument("--url", required=True)
        sub.add_argument("--token", required=True)
        if name == "setup":
            for option in ("--title", "--config", "--tasks", "--media", "--backend"):
                sub.add_argument(option, required=True)
        else:
            sub.add_argument("--project", type=int, required=True)
        if name == "annotate":
            sub.add_argument("--answers", required=True)
        if name == "predict":
            sub.add_argument("--decoded")
            sub.add_argument("--retrieve", action="store_true")
        if name == "export":
            sub.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = {"setup": setup, "annotate": annotate, "predict": predict, "export": export}[args.command](args)
    out["seconds"] = round(time.perf_counter() - started, 2)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
