"""Label Studio's side of the real-server test and of the screenshot: runs in the Label Studio venv
(`make label-studio-env`, .venv-labelstudio), where label-studio and its label-studio-sdk live, and talks to
the server only through the SDK. The test (in the project's venv) calls it as a subprocess; every
subcommand prints one JSON object on stdout.

    python client.py setup    --url URL --token TOKEN --title T --config XML --tasks JSON
                              --media DIR --backend URL
    python client.py annotate --url URL --token TOKEN --project ID --answers JSON
    python client.py predict  --url URL --token TOKEN --project ID [--decoded OUT.npz] [--retrieve]
    python client.py export   --url URL --token TOKEN --project ID --out JSON
    python client.py screenshot --url URL --token TOKEN --project ID --out PNG --username U --password P
    python client.py token    --url URL --token TOKEN      (a personal access token for the same user)

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


# The Data Manager's task columns (Label Studio 1.23), hidden in the screenshot's tab unless shown.
_DM_COLUMNS = (
    "inner_id completed_at total_annotations cancelled_annotations total_predictions annotators "
    "annotations_results annotations_ids predictions_score predictions_model_versions predictions_results "
    "file_upload storage_filename created_at updated_at updated_by avg_lead_time draft_exists"
).split()


def screenshot(args: argparse.Namespace) -> dict[str, Any]:
    """Log in to Label Studio's web interface in headless chromium (WebDriver: the system's chromium and
    chromedriver), open a Data Manager tab sorted by prediction score with the top task in the labelling
    editor (its pre-annotated masks), and save a screenshot."""
    import requests
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    headers = {"Authorization": f"Token {args.token}"}
    shown = {
        "tasks:id",
        "tasks:data.image",
        "tasks:data.item",
        "tasks:predictions_score",
        "tasks:total_annotations",
    }
    hidden = [f"tasks:{c}" for c in _DM_COLUMNS if f"tasks:{c}" not in shown]
    data = {
        "title": "ranked by forgetting",
        "ordering": ["-tasks:predictions_score"],
        "hiddenColumns": {
            "explore": hidden,
            "labeling": [*hidden, "tasks:data.image", "tasks:data.item", "tasks:total_annotations"],
        },
    }
    view = requests.post(
        f"{args.url}/api/dm/views/", json={"project": args.project, "data": data}, headers=headers, timeout=60
    )
    view.raise_for_status()
    view_id = view.json()["id"]
    ls = _client(args)
    first = _tasks(ls, args.project, ordering=["-tasks:predictions_score"])[0]

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    options.add_argument(f"--window-size={args.width},{args.height}")
    driver = webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(f"{args.url}/user/login/")
        wait.until(ec.presence_of_element_located((By.NAME, "email"))).send_keys(args.username)
        driver.find_element(By.NAME, "password").send_keys(args.password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
        if args.table_out:  # the Data Manager table: tasks sorted by prediction score
            driver.get(f"{args.url}/projects/{args.project}/data?tab={view_id}")
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img")))
            time.sleep(args.settle)
            driver.save_screenshot(args.table_out)
        driver.get(f"{args.url}/projects/{args.project}/data?tab={view_id}&task={first.id}")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "canvas")))
        time.sleep(args.settle)  # the editor draws the image and the brush regions after the page loads
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
    return {
        "path": args.out,
        "table": args.table_out,
        "view": view_id,
        "task": first.id,
        "item": first.data["item"],
    }


def token(args: argparse.Namespace) -> dict[str, Any]:
    """Create a personal access token (Label Studio's JWT refresh token) for the user of ``--token``."""
    import requests

    answer = requests.post(
        f"{args.url}/api/token/", headers={"Authorization": f"Token {args.token}"}, timeout=60
    )
    answer.raise_for_status()
    return {"personal_access_token": answer.json()["token"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "annotate", "predict", "export", "screenshot", "token"):
        sub = commands.add_parser(name)
        sub.add_argument("--url", required=True)
        sub.add_argument("--token", required=True)
        if name == "setup":
            for option in ("--title", "--config", "--tasks", "--media", "--backend"):
                sub.add_argument(option, required=True)
        elif name != "token":
            sub.add_argument("--project", type=int, required=True)
        if name == "annotate":
            sub.add_argument("--answers", required=True)
        if name == "predict":
            sub.add_argument("--decoded")
            sub.add_argument("--retrieve", action="store_true")
        if name in ("export", "screenshot"):
            sub.add_argument("--out", required=True)
        if name == "screenshot":
            sub.add_argument("--username", required=True)
            sub.add_argument("--password", required=True)
            sub.add_argument("--chromium", default="/usr/bin/chromium")
            sub.add_argument("--chromedriver", default="/usr/bin/chromedriver")
            sub.add_argument("--width", type=int, default=1600)
            sub.add_argument("--height", type=int, default=1000)
            sub.add_argument("--settle", type=float, default=8.0)
            sub.add_argument("--table-out")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    commands_ = {
        "setup": setup,
        "annotate": annotate,
        "predict": predict,
        "export": export,
        "screenshot": screenshot,
        "token": token,
    }
    out = commands_[args.command](args)
    out["seconds"] = round(time.perf_counter() - started, 2)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
