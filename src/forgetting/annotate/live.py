"""A labelling project live in Label Studio: what ``forgetting serve`` does, without the web server.

:class:`LiveProject` answers the calls of Label Studio's ML backend API (:mod:`forgetting.annotate.serve` maps
them to HTTP):

* ``health()`` and ``setup(payload)``: the backend is up; the model version is the latest round's
  (:func:`~forgetting.annotate.labels.model_version`), so Label Studio asks for new predictions after every
  round. ``setup`` checks that the Label Studio project's interface has the project's control.
* ``predict(payload)``: one prediction per task: the latest round's pre-annotation (the model's class, or its
  mask as brush regions) and its rank as the ``score``
  (:func:`~forgetting.annotate.label_studio.rank_score`), so that sorting Label Studio's tasks by
  "Prediction score" follows the strategy. Tasks outside the round's ranking get an empty prediction with no
  score (Label Studio sorts them last).
* ``webhook(payload)``: an annotation was created or updated. The payload is written to ``<project>/inbox/``
  (atomically, before the answer) and imported by the worker with the project's own rules (the same
  validation; importing the same annotation twice changes nothing; an updated annotation replaces the label).
  An annotation that cannot be imported is moved to ``inbox/rejected/`` with the reason beside it.

The worker thread (:meth:`LiveProject.start`) imports the inbox and, after every ``every`` new labels, runs
the next query (retrain and re-rank) with the project's lock held, one round at a time. Everything it knows
is in the project directory (ledger, rounds, inbox), so a crash or a restart loses nothing: on start it
imports what is left in the inbox and catches up.

After a round it tells every Label Studio project that connected (``/setup``) about it, through Label
Studio's API: it selects the new model version as the project's predictions (so the pre-annotations shown
and the "Prediction score" column are the new round's) and runs the Data Manager action "Retrieve
predictions" (Label Studio then asks ``/predict`` for every task). The API address and token are
``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (:class:`LiveSettings`), else those Label Studio sends with
``/setup`` (its host name, and its legacy token, which works when the organisation allows legacy tokens).
Without access the ranking still updates: the annotators retrieve the predictions themselves.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetting._io import atomic_write_text
from forgetting.annotate import label_studio
from forgetting.annotate.labels import model_version
from forgetting.annotate.project import LabelingProject
from forgetting.annotate.session import COLD_START_STRATEGIES
from forgetting.exceptions import ConfigError, ForgettingError, ProjectError

__all__ = ["INBOX_DIR", "LiveProject", "LiveSettings"]

logger = logging.getLogger(__name__)

INBOX_DIR = "inbox"
REJECTED_DIR = "rejected"
#: Webhook actions whose annotations are imported (an update replaces the label it changes).
IMPORT_ACTIONS: frozenset[str] = frozenset(
    {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"}
)
#: The action Label Studio sends when its user asks the model to train ("Start training").
TRAIN_ACTION = "START_TRAINING"
_NO_ROUND = "forgetting-no-round"
_RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class LiveSettings:
    """How a served project retrains.

    Attributes:
        every: run the next round after this many new (or changed) labels.
        n: images each round ranks (default: the project's ``query_size``).
        strategy: the strategy of the rounds (default: the project's).
        cold_start: the strategy of a first round without labels (``kcenter-pixels`` or ``random``).
        seed: the query seed.
        label_studio_url: Label Studio's address for telling it about new rounds (default: the host name
            it sends with ``/setup``).
        label_studio_token: an API token of Label Studio (a legacy token, or a personal access token;
            default: the one it sends with ``/setup``).
    """

    every: int = 10
    n: int | None = None
    strategy: str | None = None
    cold_start: str = "kcenter-pixels"
    seed: int = 0
    label_studio_url: str | None = None
    label_studio_token: str | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"every must be >= 1 (labels between rounds), got {self.every}")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if self.cold_start not in COLD_START_STRATEGIES:
            raise ConfigError(
                f"cold_start {self.cold_start!r} is not a strategy that needs no labels; choose one of "
                f"{', '.join(COLD_START_STRATEGIES)}"
            )


class LiveProject:
    """A labelling project that Label Studio talks to (see the module docstring).

    Args:
        root: the project directory.
        settings: when to retrain, and how.

    Raises:
        ProjectError: ``root`` holds no project.
    """

    def __init__(self, root: str | Path, settings: LiveSettings | None = None) -> None:
        self.root = LabelingProject.open(root).root
        self.settings = settings or LiveSettings()
        self.calls: Counter[str] = Counter()  # what Label Studio called, for /health and the tests
        self.training = False
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._train_now = False
        self._thread: threading.Thread | None = None
        self._predictions: tuple[tuple[int, int], dict[str, dict[str, Any]], str] | None = None
        self._sequence = 0
        self._lock = threading.Lock()
        # Label Studio project id -> (API address, token, where the token came from: "settings" or "setup")
        self._connected: dict[int, tuple[str, str, str]] = {}

    def project(self) -> LabelingProject:
        """The project, freshly opened (its settings may have been edited)."""
        return LabelingProject.open(self.root)

    @property
    def inbox(self) -> Path:
        """``<project>/inbox``: annotations received and not imported yet."""
        return self.root / INBOX_DIR

    # ------------------------------------------------------------------------------------ the API calls

    def health(self) -> dict[str, Any]:
        """``GET /health``: the backend is up, and where the project stands."""
        self.calls["health"] += 1
        project = self.project()
        status = project.status()
        return {
            "status": "UP",
            "model_class": "forgetting",
            "task": status.task,
            "model_version": self.model_version(project),
            "rounds": status.rounds,
            "labels": status.n_labeled,
            "new_labels": status.new_labels,
            "every": self.settings.every,
            "inbox": len(self._pending()),
            "rejected": len(list((self.inbox / REJECTED_DIR).glob("*.json"))),
            "training": self.training,
            "last_error": self.last_error,
            "calls": dict(self.calls),
            "label_studio": {str(k): {"url": v[0], "token": v[2]} for k, v in self._connected.items()},
        }

    def setup(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /setup``: Label Studio connects a project. Checks its labelling interface (``schema``)
        and answers the model version.

        Raises:
            ProjectError: the interface has no control the project can read (the message says which).
        """
        self.calls["setup"] += 1
        project = self.project()
        schema = payload.get("schema") or payload.get("label_config")
        if schema:
            self._check_interface(project, str(schema))
        self._remember(payload)
        return {"model_version": self.model_version(project)}

    def predict(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /predict``: ``{"results": [one prediction per task]}`` (see the module docstring)."""
        self.calls["predict"] += 1
        tasks = payload.get("tasks") or []
        if not isinstance(tasks, list):
            raise ProjectError("predict: 'tasks' must be a list of Label Studio tasks")
        project = self.project()
        predictions, version = self._round_predictions(project)
        index = project.item_index()
        results = []
        for task in tasks:
            data = task.get("data", {}) if isinstance(task, dict) else {}
            ref = data.get("item", data.get("image")) if isinstance(data, dict) else None
            item = index.resolve(str(ref)) if ref is not None else None
            found = predictions.get(item) if item is not None else None
            results.append(found or label_studio.prediction([], score=None, model_version=version))
        return {"results": results}

    def webhook(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /webhook``: store an annotation event in the inbox for the worker; start a round now on
        ``START_TRAINING``. Other events are acknowledged and ignored."""
        action = str(payload.get("action", ""))
        self.calls[f"webhook:{action}"] += 1
        if action == TRAIN_ACTION:
            self._train_now = True
            self._wake.set()
            return {"status": "ok", "queued": "training"}
        if action not in IMPORT_ACTIONS:
            logger.info("webhook %s: nothing to do", action or "(no action)")
            return {"status": "ok", "ignored": action}
        tasks = _annotated_tasks(payload)
        with self._lock:
            self._sequence += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._sequence:06d}-{action}.json"
        atomic_write_text(self.inbox / name, json.dumps({"action": action, "tasks": tasks}))
        self._wake.set()
        return {"status": "ok", "queued": len(tasks)}

    # ------------------------------------------------------------------------------------ the worker

    def start(self) -> None:
        """Start the worker thread (it imports the inbox and runs the rounds)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="forgetting-serve", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the worker to stop after its current step, and wait for it (a round in progress finishes)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def step(self) -> bool:
        """One pass of the worker: import the inbox, then run a round if one is due. Returns whether a
        round ran. Raises what the round raised; the worker logs it and retries on the next event."""
        self.import_inbox()
        project = self.project()
        status = project.status()
        due = status.rounds == 0 or status.new_labels >= self.settings.every or self._train_now
        if not due:
            return False
        self._train_now = False
        strategy = (self.settings.strategy or project.settings.strategy) if status.n_labeled else None
        self.training = True
        try:
            result = project.query(
                self.settings.n, strategy or self.settings.cold_start, seed=self.settings.seed
            )
            project.export_label_studio_tasks()
        finally:
            self.training = False
        logger.info(
            "round %d: %s ranked %d of %d unlabelled images (trained on %d labels)",
            result.round,
            result.strategy,
            len(result.items),
            result.n_pool,
            result.n_labeled,
        )
        self.notify_label_studio(project)
        return True

    def import_inbox(self) -> int:
        """Import the stored annotation events, oldest first; returns how many were imported. One that
        fails validation is moved to ``inbox/rejected/`` with ``<name>.error.txt``; one that finds the
        project busy (another process's import or query) stays for the next pass."""
        done = 0
        for path in self._pending():
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
                project = self.project()
                summary = project.import_label_studio_tasks(
                    event["tasks"],
                    source=f"label-studio:{event['action'].lower()}",
                    overwrite=event["action"] == "ANNOTATION_UPDATED",
                )
            except ProjectError as exc:
                if "in use by another" in str(exc):
                    logger.info("%s: the project is busy; importing it later", path.name)
                    break
                self._reject(path, exc)
                continue
            except (ForgettingError, KeyError, TypeError, ValueError) as exc:
                self._reject(path, exc)
                continue
            path.unlink(missing_ok=True)
            done += 1
            logger.info(
                "%s: %d added, %d unchanged, %d overwritten, %d without a label",
                summary.source,
                summary.added,
                summary.unchanged,
                summary.overwritten,
                summary.skipped,
            )
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=_RETRY_SECONDS if self._pending() else None)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while self.step() and not self._stop.is_set():
                    pass  # a round may leave enough new labels (imported meanwhile) for the next one
                self.last_error = None
            except ForgettingError as exc:
                if "in use by another" in str(exc):
                    self._wake.set()  # another process holds the project: try again shortly
                    self._stop.wait(_RETRY_SECONDS)
                    continue
                self.last_error = str(exc)
                logger.error("serve: %s", exc)
            except Exception as exc:  # keep serving; the next label retries the round
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("serve: the round failed")

    # ------------------------------------------------------------------------------------ Label Studio

    def _remember(self, payload: Mapping[str, Any]) -> None:
        """Keep the Label Studio project of a ``/setup`` call, with how to reach its API."""
        try:
            project_id = int(str(payload.get("project", "")).split(".", 1)[0])
        except ValueError:
            return
        url = self.settings.label_studio_url or payload.get("hostname")
        token = self.settings.label_studio_token or payload.get("access_token")
        if url and token:
            origin = "settings" if self.settings.label_studio_token else "setup"
            self._connected[project_id] = (str(url).rstrip("/"), str(token), origin)
        else:
            logger.info(
                "Label Studio project %d connected without %s: new rounds are not pushed to it (give serve "
                "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)",
                project_id,
                "an address" if not url else "a token",
            )

    def notify_label_studio(self, project: LabelingProject | None = None) -> list[int]:
        """Tell the connected Label Studio projects about the latest round (see the module docstring);
        returns the ids of those told. Failures are logged, never raised: Label Studio may be down."""
        version = self.model_version(project)
        told = []
        for project_id, (url, token, _) in list(self._connected.items()):
            try:
                headers = _auth_headers(url, token)
                # Predictions first: Label Studio only selects a model version that has predictions.
                action = f"{url}/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}"
                _request(action, {"selectedItems": {"all": True, "excluded": []}}, headers, "POST")
                _request(f"{url}/api/projects/{project_id}", {"model_version": version}, headers, "PATCH")
            except (OSError, ValueError, KeyError) as exc:
                logger.warning(
                    "Label Studio project %d at %s was not told about %s (%s); retrieve the predictions in "
                    "its Data Manager, or give serve LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY",
                    project_id,
                    url,
                    version,
                    exc,
                )
                continue
            told.append(project_id)
            logger.info("Label Studio project %d: predictions of %s retrieved", project_id, version)
        return told

    # ------------------------------------------------------------------------------------ helpers

    def model_version(self, project: LabelingProject | None = None) -> str:
        """The latest round's model version (``forgetting-no-round`` before the first round)."""
        project = project or self.project()
        done = project.round_count()
        meta = project.round_meta(done - 1) if done else None
        return model_version(meta) if meta else _NO_ROUND

    def _round_predictions(self, project: LabelingProject) -> tuple[dict[str, dict[str, Any]], str]:
        done = project.round_count()
        if not done:
            return {}, _NO_ROUND
        query_json = project.root / "rounds" / str(done - 1) / "query.json"
        key = (done, query_json.stat().st_mtime_ns)
        cached = self._predictions
        if cached is None or cached[0] != key:
            meta = project.round_meta(done - 1) or {}
            cached = (key, project.round_predictions(done - 1), model_version(meta))
            self._predictions = cached
        return cached[1], cached[2]

    def _pending(self) -> list[Path]:
        return sorted(self.inbox.glob("*.json")) if self.inbox.is_dir() else []

    def _reject(self, path: Path, exc: BaseException) -> None:
        rejected = self.inbox / REJECTED_DIR
        rejected.mkdir(parents=True, exist_ok=True)
        atomic_write_text(rejected / f"{path.name}.error.txt", f"{type(exc).__name__}: {exc}\n")
        path.replace(rejected / path.name)
        logger.error("%s was not imported (moved to %s): %s", path.name, rejected, exc)

    def _check_interface(self, project: LabelingProject, schema: str) -> None:
        """The Label Studio project's interface must have the project's control (``label`` on ``image``,
        of the project's kind) with the project's classes."""
        expected = ET.fromstring(project.kind.label_studio_config())
        want = next(e for e in expected.iter() if e.get("name") == label_studio.FROM_NAME)
        try:
            root = ET.fromstring(schema)
        except ET.ParseError as exc:
            raise ProjectError(f"setup: the Label Studio interface is not valid XML ({exc})") from None
        control = next((e for e in root.iter() if e.get("name") == label_studio.FROM_NAME), None)
        fix = f"use the interface in {project.label_studio_config_path}"
        if control is None or control.tag != want.tag or control.get("toName") != label_studio.TO_NAME:
            raise ProjectError(
                f'setup: the Label Studio project needs a <{want.tag} name="{label_studio.FROM_NAME}" '
                f'toName="{label_studio.TO_NAME}"> control for this {project.settings.task} project; {fix}'
            )
        values = [e.get("value") for e in control if e.get("value") is not None]
        unknown = sorted(set(values) - set(project.settings.classes))
        if unknown and (project.settings.fixed_classes or want.tag != "Choices"):
            raise ProjectError(
                f"setup: the Label Studio interface has classes {unknown} that the project does not have "
                f"({project.settings.classes}); {fix}"
            )


def _request(url: str, body: Any, headers: Mapping[str, str], method: str, timeout: float = 300) -> Any:
    """A JSON request to Label Studio's API; its JSON answer (``None`` when empty)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise OSError(f"{method} {url}: HTTP {exc.code}: {detail}") from None
    return json.loads(data) if data.strip() else None


def _auth_headers(url: str, token: str) -> dict[str, str]:
    """The authorisation of a Label Studio API token: a legacy token as ``Token``, a personal access token
    (a JWT refresh token) exchanged for an access token (``Bearer``)."""
    if token.count(".") == 2:  # a JWT
        answer = _request(f"{url}/api/token/refresh/", {"refresh": token}, {}, "POST", timeout=30)
        return {"Authorization": f"Bearer {answer['access']}"}
    return {"Authorization": f"Token {token}"}


def _annotated_tasks(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tasks of a webhook payload, each with its annotation(s): ``ANNOTATION_*`` carries one annotation
    and its task, ``ANNOTATIONS_CREATED`` lists of both."""
    annotations = payload.get("annotation")
    tasks = payload.get("task")
    if isinstance(annotations, dict):
        annotations = [annotations]
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(annotations, list) or not isinstance(tasks, list):
        raise ProjectError("webhook: an annotation event needs 'annotation' and 'task'")
    by_id = {t.get("id"): t for t in tasks if isinstance(t, dict)}
    out: list[dict[str, Any]] = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            continue
        task = by_id.get(annotation.get("task"), tasks[0] if len(tasks) == 1 else None)
        if task is None:
            raise ProjectError(f"webhook: annotation {annotation.get('id')} names no task of the payload")
        out.append({"id": task.get("id"), "data": task.get("data", {}), "annotations": [annotation]})
    return out
