"""A labelling project: a directory that holds the settings, the labels so far and every query's output.

Layout::

    <project>/
      forgetting.toml            settings: image source, classes, model, strategy, training (editable)
      labels.jsonl               the label ledger: one JSON object per labelled item
      label_studio_config.xml    a Label Studio labelling interface for the classes (choices, or brush
                                 labels for segmentation)
      label_studio_tasks.json    every image as a Label Studio task, with the latest round's
                                 pre-annotations (written by export_label_studio_tasks and `serve`)
      media/                     PNGs of array rows, shown to annotators (array sources only)
      masks/                     segmentation: the imported masks (<image without extension>.<digest>.png)
      inbox/                     `forgetting serve`: Label Studio annotations received, not yet imported
      rounds/<k>/                query k: query.csv, label_studio.json (tasks with the model's
                                 pre-annotations), index.html, query.json (+ dynamics.npz with the pool's
                                 switch counts and dynamics.csv, the per-sample table of
                                 forgetting.exports, when it was tracked; segmentation: + maps.npz with
                                 the queried images' predicted classes, pixel scores and switch maps)

The ledger holds the current label of every labelled item: ``item`` (path relative to the image folder, or
the row index of an array file), ``label`` (class name), ``source`` (the file or API call it came from),
``round`` (the first round whose model trains on it: the number of queries made before it was imported)
and ``imported_at`` (UTC). Every write replaces a file atomically, so a crash leaves the old state or the
new one. Imports are all-or-nothing and idempotent: importing the same labels again changes nothing, and a
different label for a labelled item raises :class:`~forgetting.exceptions.LabelConflictError` unless
``overwrite`` is given.

Rounds: a query with the same labels as the latest round re-runs that round (and, when nothing else
changed either, returns the stored result); a query after new labels starts round ``k + 1``. The same
labels, settings and seed give the same ranking on the CPU.

What the labels are is the business of the project's kind of labels (:mod:`~forgetting.annotate.labels`,
chosen once from ``task``); this module reads the same for both.

Segmentation (``task = "segmentation"``): labels are masks of class ids ``0..K-1`` per pixel, with
``[segmentation] ignore_index`` (255 by default) for unlabelled pixels. They are imported from a folder of
mask files or an ``.npz`` (:func:`~forgetting.annotate.importers.read_mask_source`), or a Label Studio
export of brush annotations (:func:`~forgetting.annotate.importers.read_label_studio_masks`), checked
against the image size and the classes, and stored under ``<project>/masks/``, named after the image plus
the first 12 hex digits of the mask's digest: a changed mask is a new file, so the ledger (written last)
never points at a half-replaced one. A ledger entry then has ``mask`` (that path), ``digest`` (SHA-256 of
the mask's shape and values), ``pixels`` (labelled pixels per class id) and ``ignored`` (unlabelled pixels)
instead of a ``label``. The same mask imported again changes nothing; a different mask for a labelled image
raises :class:`~forgetting.exceptions.LabelConflictError` unless ``overwrite``. A query trains on the masks
and ranks the unlabelled images with :func:`~forgetting.annotate.session.rank_pool` and the project's task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from forgetting._io import atomic_savez, atomic_write_text, make_directory
from forgetting._lock import LOCK_FILE, directory_lock
from forgetting.annotate.exporters import (
    write_json,
    write_png,
)
from forgetting.annotate.importers import (
    LabelFormat,
    read_mask_file,
)
from forgetting.annotate.labels import MEDIA_DIR, LabelKind, label_kind, model_version
from forgetting.annotate.ledger import ImportSummary, LabelEntry, ProjectStatus, digest, now
from forgetting.annotate.results import QueryResult, RankedItem
from forgetting.annotate.session import (
    known_strategies,
    query_strategies,
    rank_pool,
)
from forgetting.annotate.settings import (
    DEFAULT_IGNORE_INDEX,
    FORMAT_VERSION,
    MANIFEST_FILE,
    ProjectSettings,
    dump_settings,
    load_settings,
    validate_settings,
)
from forgetting.annotate.sources import ImageSource, ItemIndex
from forgetting.exceptions import (
    ConfigError,
    ProjectError,
    UnknownNameError,
)
from forgetting.exports import write_csv
from forgetting.loop import TrackConfig
from forgetting.training import TrainConfig

__all__ = [
    "LEDGER_FILE",
    "MANIFEST_FILE",
    "ImportSummary",
    "LabelEntry",
    "LabelingProject",
    "ProjectSettings",
    "ProjectStatus",
    "init_project",
]

logger = logging.getLogger(__name__)

LEDGER_FILE = "labels.jsonl"
LABEL_STUDIO_CONFIG_FILE = "label_studio_config.xml"
LABEL_STUDIO_TASKS_FILE = "label_studio_tasks.json"
ROUNDS_DIR = "rounds"
#: Label Studio's URL of a file served from its local-files document root.
LOCAL_FILES_PREFIX = "/data/local-files/?d="


def _as_dict(value: Any) -> dict[str, Any]:
    """Settings given as a mapping, a dataclass or a pydantic model, without ``None`` values (defaults)."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    elif isinstance(value, BaseModel):
        value = value.model_dump()
    return {k: v for k, v in dict(value).items() if v is not None}


# --------------------------------------------------------------------------------------------------------
# The project


def init_project(
    root: str | Path,
    images: str | Path,
    *,
    classes: Sequence[str] | str | None = None,
    task: str = "classification",
    ignore_index: int | None = DEFAULT_IGNORE_INDEX,
    model: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    strategy: str = "gauss",
    query_size: int = 20,
    train: Mapping[str, Any] | TrainConfig | None = None,
    track: Mapping[str, Any] | TrackConfig | None = None,
    image_key: str | None = None,
    size: tuple[int, int] | None = None,
    device: str | None = None,
    labels: str | Path | None = None,
) -> LabelingProject:
    """Create a labelling project in ``root`` (created if missing) for the images at ``images``.

    Args:
        root: the project directory; it must not hold a project yet.
        images: a folder of image files (item ids: relative paths) or an ``.npz``/``.npy`` file of images
            (item ids: row indices).
        classes: class names (a list or ``"a,b,c"``). Given, they are fixed: labels outside them are refused.
            Omitted, classes are added as imported labels name them (classification only).
        task: ``"classification"`` (one class per image) or ``"segmentation"`` (a mask per image: class id
            ``k`` of ``classes[k]`` per pixel; ``classes`` required).
        ignore_index: segmentation: the mask value of unlabelled pixels (not a class id; ``None``: every
            value is a class).
        model: a model of the task from :func:`forgetting.list_models` (default ``small-cnn``, or ``unet``
            for segmentation); ``model_options`` its options.
        strategy: the default query strategy; ``query_size`` the default number of images per query.
        train: training settings (keys of :class:`~forgetting.training.TrainConfig`, or one).
        track: tracking settings (keys of :class:`~forgetting.loop.TrackConfig`, or one).
        image_key: the array name in an ``.npz`` (default ``images``, or its only array).
        size: ``(height, width)`` to resize folder images to (needed when their sizes differ).
        device: ``cpu``, ``cuda``, ... (default: the best available).
        labels: a CSV or Label Studio export of the labels known so far (segmentation: a folder of masks or
            an ``.npz``), imported right away.

    Raises:
        ProjectError: ``root`` already holds a project, or a setting is invalid.
        DatasetNotFoundError: ``images`` does not exist.
    """
    from forgetting.models import validate_model_ref

    root = Path(root).expanduser().resolve()
    if (root / MANIFEST_FILE).exists():
        raise ProjectError(
            f"{root} already holds a labelling project ({MANIFEST_FILE}); open it with "
            "LabelingProject.open(...) or run `forgetting query` on it, or pick another directory"
        )
    kind = label_kind(task)
    source = ImageSource.from_path(images, key=image_key, size=size)
    ids = source.item_ids()
    if isinstance(classes, str):
        classes = [c for c in (p.strip() for p in classes.split(",")) if c]
    kind.check_classes(list(classes or []))
    model = model or kind.default_model
    _check_model_task(model, task, where="init_project")
    validate_model_ref(model, model_options)  # checks the options (or the import path) now, not at a query
    raw: dict[str, Any] = {
        "task": task,
        "classes": list(classes or []),
        "fixed_classes": bool(classes),
        "model": model,
        "strategy": strategy,
        "query_size": query_size,
        "device": device,
        "images": {"path": str(source.path), "key": image_key, "size": list(size) if size else None},
        "model_options": dict(model_options or {}),
        "train": _as_dict(train),
        "track": _as_dict(track),
        **kind.settings_section(ignore_index=ignore_index),
    }
    media = source.path if source.kind == "folder" else root / MEDIA_DIR
    raw["label_studio_url_prefix"] = f"{LOCAL_FILES_PREFIX}{urllib.parse.quote(media.name)}/"
    settings = validate_settings(raw, source="init_project")
    _check_strategy(strategy, settings)
    make_directory(root, what="project directory", hint="pick another directory", error=ProjectError)
    with directory_lock(root, what="a project creation", error=ProjectError):
        if (root / MANIFEST_FILE).exists():  # another process created it meanwhile
            raise ProjectError(
                f"{root} already holds a labelling project ({MANIFEST_FILE}); pick another directory"
            )
        atomic_write_text(root / LEDGER_FILE, "")
        atomic_write_text(root / MANIFEST_FILE, dump_settings(settings))
        project = LabelingProject(root, settings)
        project.write_label_studio_config()
        if labels is not None:
            try:
                project.import_labels(labels)
            except BaseException:  # leave no half-made project behind: the user fixes the file and retries
                for name in (MANIFEST_FILE, LEDGER_FILE, LABEL_STUDIO_CONFIG_FILE, LOCK_FILE):
                    (root / name).unlink(missing_ok=True)
                raise
    logger.debug("labelling project created in %s for %d images in %s", root, len(ids), source.path)
    return project


def _check_model_task(model: str, task: str, *, where: str) -> None:
    """An error naming the fix when a registered model solves another task than the project's. Import
    paths (``"pkg.mod:fn"``) and user models registered without a task are the user's to match."""
    from forgetting.models import is_import_path, list_models, model_info

    if is_import_path(model):
        return
    model_task = model_info(model).get("task")
    if model_task is not None and model_task != task:
        wanted = ", ".join(list_models(task))  # type: ignore[arg-type]
        raise ProjectError(
            f"{where}: model {model!r} is a {model_task} model, but the project's task is {task}; set model "
            f"to one of {wanted}, or to the import path of your own ('pkg.mod:fn')"
        )


def _check_model(settings: ProjectSettings) -> None:
    """An error naming the fix when the project's model does not solve its task (e.g. after an edit)."""
    _check_model_task(settings.model, settings.task, where=MANIFEST_FILE)


def _check_strategy(strategy: str, settings: ProjectSettings) -> str:
    """The normalised strategy name; an error listing the strategies the project's task can query with."""
    name = strategy.strip().lower().replace("_", "-")
    if name not in known_strategies():
        raise UnknownNameError(
            f"unknown strategy {strategy!r}; known strategies: {', '.join(known_strategies())}"
        )
    supported = query_strategies(settings.build_task())
    if name not in supported:
        raise ProjectError(
            f"strategy {name!r} has no {settings.task} form (it needs gradient embeddings, a joint MC "
            f"selection or the true labels); {settings.task} projects support: {', '.join(supported)}"
        )
    return name


class LabelingProject:
    """A labelling project directory. Create one with :func:`init_project`, open one with :meth:`open`.

    Example::

        project = init_project("my-project", "unlabelled-images/", classes=["cat", "dog"])
        result = project.query(20, strategy="kcenter-pixels")  # no labels yet: a class-agnostic first batch
        # ... label result.csv_path (or result.label_studio_path in Label Studio) ...
        project.import_labels("my-project/rounds/0/query.csv")
        result = project.query(20)  # GauSS on the switch counts of a model trained on those labels
    """

    def __init__(self, root: Path, settings: ProjectSettings) -> None:
        self.root = root
        self.settings = settings

    @classmethod
    def open(cls, root: str | Path) -> LabelingProject:
        """Open the project in ``root``.

        Raises:
            ProjectError: ``root`` holds no project, or its settings are invalid.
        """
        root = Path(root).expanduser().resolve()
        manifest = root / MANIFEST_FILE
        if not manifest.is_file():
            raise ProjectError(
                f"{root} is not a labelling project (no {MANIFEST_FILE}); create one with "
                f"`forgetting init-project {root} --images PATH` (Python: forgetting.init_project)"
            )
        return cls(root, load_settings(manifest))

    def __repr__(self) -> str:
        return f"LabelingProject({str(self.root)!r})"

    # ---------------------------------------------------------------------------------------- plumbing

    @property
    def source(self) -> ImageSource:
        """The project's images."""
        return self.settings.source(self.root)

    @property
    def media_root(self) -> Path:
        """The directory of the images Label Studio shows: the image folder, or ``<project>/media`` (the PNGs
        of array rows). Label Studio serves it as a local storage."""
        return self.source.path if self.source.kind == "folder" else self.root / MEDIA_DIR

    @property
    def label_studio_document_root(self) -> Path | None:
        """Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` for the image URLs the project writes.

        With the default URL prefix (``/data/local-files/?d=<media folder>/``) it is the folder above
        :attr:`media_root` (Label Studio refuses a local storage at its document root). ``None`` when
        ``label_studio_url_prefix`` is not a local-files prefix that ends in a part of the media root.
        """
        prefix = self.settings.label_studio_url_prefix
        if not prefix.startswith(LOCAL_FILES_PREFIX):
            return None
        rel = [p for p in urllib.parse.unquote(prefix[len(LOCAL_FILES_PREFIX) :]).split("/") if p]
        media = self.media_root
        if rel and list(media.parts[-len(rel) :]) != rel:
            return None
        return Path(*media.parts[: len(media.parts) - len(rel)]) if rel else media

    def image_url(self, name: str) -> str:
        """The URL of the image ``name`` (its media name) in the Label Studio files the project writes."""
        return self.settings.label_studio_url_prefix + urllib.parse.quote(name)

    @property
    def kind(self) -> LabelKind:
        """The project's kind of labels (:mod:`~forgetting.annotate.labels`), from its task."""
        return label_kind(self.settings.task)(self)

    @property
    def manifest(self) -> Path:
        """``forgetting.toml``."""
        return self.root / MANIFEST_FILE

    @property
    def ledger_path(self) -> Path:
        """``labels.jsonl``."""
        return self.root / LEDGER_FILE

    @property
    def label_studio_config_path(self) -> Path:
        """``label_studio_config.xml``: the Label Studio labelling interface of the project's classes."""
        return self.root / LABEL_STUDIO_CONFIG_FILE

    @property
    def label_studio_tasks_path(self) -> Path:
        """``label_studio_tasks.json`` (see :meth:`export_label_studio_tasks`)."""
        return self.root / LABEL_STUDIO_TASKS_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the project for the duration of an import or a query (POSIX only; see
        :func:`forgetting._lock.directory_lock`).

        Raises:
            ProjectError: another import or query (of this or another process) holds it; the message names
                the holder's PID. A lock left by a killed process is taken over.
        """
        with directory_lock(self.root, what="an import or query", error=ProjectError):
            yield

    def reload(self) -> None:
        """Read the settings again (they may have been edited)."""
        self.settings = load_settings(self.manifest)

    def save_settings(self, settings: ProjectSettings) -> None:
        """Replace the settings (``forgetting.toml``, and the Label Studio interface of the classes)."""
        self.settings = settings
        atomic_write_text(self.manifest, dump_settings(settings))
        self.write_label_studio_config()

    def write_label_studio_config(self) -> Path:
        """Write ``label_studio_config.xml`` for the project's classes; returns its path."""
        return atomic_write_text(self.label_studio_config_path, self.kind.label_studio_config())

    def item_index(self, ids: Sequence[str] | None = None) -> ItemIndex:
        """How label files may name the images (see :class:`~forgetting.annotate.sources.ItemIndex`)."""
        source = self.source
        ids = source.item_ids() if ids is None else list(ids)
        return ItemIndex(ids, [source.media_name(i, len(ids)) for i in ids])

    # ------------------------------------------------------------------------------------------ ledger

    def labels(self) -> dict[str, LabelEntry]:
        """The ledger: item id -> :class:`LabelEntry`, in import order."""
        path = self.ledger_path
        if not path.exists():
            return {}
        entries: dict[str, LabelEntry] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ProjectError(f"{path} is not UTF-8 text ({exc}); restore it from a backup") from None
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = LabelEntry(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ProjectError(
                    f"{path} line {line_no} is corrupt ({exc}); restore it from a backup or remove the line"
                ) from None
            entries[entry.item] = entry
        return entries

    def write_ledger(self, entries: Mapping[str, LabelEntry]) -> None:
        """Replace the ledger with ``entries``, atomically (callers hold :meth:`locked`)."""
        lines = ({k: v for k, v in asdict(e).items() if v is not None} for e in entries.values())
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        atomic_write_text(self.ledger_path, text)

    def import_labels(
        self, path: str | Path, *, overwrite: bool = False, fmt: LabelFormat = "auto"
    ) -> ImportSummary:
        """Add the labels of a CSV (``item,label``) or a Label Studio JSON export to the project.

        All or nothing: if any row is bad, nothing is imported. Importing the same labels again is a no-op.

        Segmentation projects import masks instead: ``path`` is a folder of mask files, an ``.npz`` (see
        :func:`~forgetting.annotate.importers.read_mask_source`) or a Label Studio JSON export of brush
        annotations (:func:`~forgetting.annotate.importers.read_label_studio_masks`), with the same rules.

        Args:
            path: the file. The ranked ``query.csv`` of a round with its ``label`` column filled in works.
                Segmentation: a folder of masks (named as the ``mask_file`` column of ``query.csv``), an
                ``.npz`` with ``masks`` and ``ids``, or a Label Studio ``.json`` export.
            overwrite: replace the labels of items that already have a different one.
            fmt: ``auto`` (by suffix), ``csv`` or ``label-studio``.

        Raises:
            LabelImportError: the file is malformed, names an unknown image, or (with fixed classes) an
                unknown class. The message names the rows.
            LabelConflictError: a label contradicts the project's (without ``overwrite``) or another row of
                the file. The message lists item, old and new label, and how to resolve it.
        """
        return self.kind.import_file(path, overwrite=overwrite, fmt=fmt)

    def import_label_studio_tasks(
        self, tasks: Sequence[Any], *, source: str, overwrite: bool = False
    ) -> ImportSummary:
        """Add the labels (or masks) of Label Studio tasks with their annotations, as they come in an export
        or a webhook, with the rules of :meth:`import_labels`."""
        rows, skipped = self.kind.rows_from_label_studio(tasks, source)
        return self.kind.apply(rows, source=source, overwrite=overwrite, skipped=skipped)

    def add_labels(
        self, labels: Mapping[str, str], *, overwrite: bool = False, source: str = "python"
    ) -> ImportSummary:
        """Add ``{item id: class name}`` labels from Python, with the same rules as :meth:`import_labels`."""
        return self.kind.add_labels(labels, overwrite=overwrite, source=source)

    def add_masks(
        self,
        masks: Mapping[str, np.ndarray | torch.Tensor],
        *,
        overwrite: bool = False,
        source: str = "python",
    ) -> ImportSummary:
        """Add ``{item id: mask}`` from Python (segmentation projects), as :meth:`import_labels` does.

        A mask is an integer (or bool) ``[H, W]`` array of the image's size: class id ``k`` (of
        ``classes[k]``) per pixel, the ignore index for unlabelled pixels.
        """
        return self.kind.add_masks(masks, overwrite=overwrite, source=source)

    def load_mask(self, item: str) -> np.ndarray:
        """The stored mask of a labelled item: an integer ``[H, W]`` array (uint8 when the class ids and the
        ignore index fit).

        Raises:
            ProjectError: ``item`` has no mask.
        """
        entry = self.labels().get(item)
        if entry is None or entry.mask is None:
            raise ProjectError(f"{item!r} has no mask in {self.root}")
        return read_mask_file(self.root / entry.mask)

    # ------------------------------------------------------------------------------------------ rounds

    def _rounds_dir(self) -> Path:
        return self.root / ROUNDS_DIR

    def round_meta(self, k: int) -> dict[str, Any] | None:
        """Round ``k``'s ``query.json``, or ``None`` when the round is not (completely) on disk."""
        path = self._rounds_dir() / str(k) / "query.json"
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            return meta
        except (OSError, ValueError):
            logger.warning("%s is unreadable; round %d will be recomputed", path, k)
            return None

    def round_count(self) -> int:
        """Rounds 0..k-1 complete on disk (a round is complete when its query.json exists)."""
        k = 0
        while self.round_meta(k) is not None:
            k += 1
        return k

    def round_result(self, k: int) -> QueryResult:
        """The stored result of round ``k``.

        Raises:
            ProjectError: round ``k`` has not been queried.
        """
        meta = self.round_meta(k)
        if meta is None:
            raise ProjectError(f"{self.root} has no round {k}; run a query first")
        return _result_from_meta(meta, self._rounds_dir() / str(k), reused=True)

    def round_predictions(self, k: int) -> dict[str, dict[str, Any]]:
        """Round ``k``'s Label Studio predictions: item -> prediction (pre-annotation, rank score, model
        version), for the ranked items the round's model predicted (none for model-free strategies)."""
        meta = self.round_meta(k)
        if meta is None:
            raise ProjectError(f"{self.root} has no round {k}; run a query first")
        items = [RankedItem.from_json(r) for r in meta["items"]]
        maps_file = self._rounds_dir() / str(k) / "maps.npz"
        maps: dict[str, np.ndarray] = {}
        if maps_file.is_file():
            with np.load(maps_file) as archive:
                maps = {name: archive[name] for name in archive.files if name != "items"}
        predictions = self.kind.predictions(items, maps, model_version=model_version(meta))
        return {r.item: p for r, p in zip(items, predictions, strict=True) if p is not None}

    def export_label_studio_tasks(self, path: str | Path | None = None) -> Path:
        """Write every image as a Label Studio import task (``data.image``, ``data.item``), with the latest
        round's pre-annotation and rank score where it has one; array rows are written as PNGs under
        ``media/`` for Label Studio to show. Import the file once; `forgetting serve` keeps the predictions
        current afterwards.

        Args:
            path: the file (default ``<project>/label_studio_tasks.json``).

        Returns:
            The path written.
        """
        source = self.source
        ids = source.item_ids()
        names = [source.media_name(item, len(ids)) for item in ids]
        if source.kind != "folder" and not all((self.root / MEDIA_DIR / n).is_file() for n in names):
            _, images = source.load()  # array rows are shown as PNGs under media/
            for row, name in enumerate(names):
                if not (self.root / MEDIA_DIR / name).is_file():
                    write_png(self.root / MEDIA_DIR / name, images[row])
        done = self.round_count()
        predictions = self.round_predictions(done - 1) if done else {}
        meta = self.round_meta(done - 1) if done else None
        ranked = {r["item"]: r for r in meta["items"]} if meta else {}
        tasks = []
        for item, name in zip(ids, names, strict=True):
            task: dict[str, Any] = {"data": {"image": self.image_url(name), "item": item}}
            if item in ranked:
                task["meta"] = {"rank": ranked[item]["rank"], "round": meta["round"] if meta else None}
            if item in predictions:
                task["predictions"] = [predictions[item]]
            tasks.append(task)
        return write_json(Path(path) if path is not None else self.label_studio_tasks_path, tasks)

    def query(
        self,
        n: int | None = None,
        strategy: str | None = None,
        *,
        seed: int = 0,
        strategy_options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> QueryResult:
        """Rank the unlabelled images and write the next ``n`` to label to ``<project>/rounds/<k>/``.

        Trains the project's model on the labelled images (seeded by ``seed`` and the round), tracks the
        unlabelled ones while it trains when the strategy needs dynamics, and lets the strategy choose.

        Round number: if the labels are those of the latest round, that round is run again (returning the
        stored result unchanged when the strategy, seed, ``n`` and settings are also the same, unless
        ``force``); otherwise a new round starts.

        Args:
            n: how many images (default: ``query_size`` of the settings).
            strategy: a strategy name (default: the settings'); ``random`` or ``kcenter-pixels`` need no
                labels (cold start).
            seed: the query seed. Same labels, settings and seed give the same ranking on the CPU.
            strategy_options: options of the strategy (default: ``strategy_options.<name>`` of the
                settings).
            force: recompute even when an identical query is on disk.

        Segmentation projects train on the masks (class weights from them, the ignore index honoured), track
        the unlabelled images per pixel when the strategy needs switch counts, and rank them by their pixel
        scores reduced to one per image (``[segmentation] reduction``); see
        :func:`~forgetting.annotate.session.rank_pool`.

        Returns:
            A :class:`QueryResult`; its files are ``query.csv``, ``label_studio.json`` (tasks with the model's
            pre-annotations) and ``index.html`` (segmentation: ``query.csv`` with a ``mask_file`` column,
            ``index.html`` with the prediction, pixel-score and switch maps, ``maps.npz``).

        Raises:
            ProjectError: the strategy needs labels and there are none (the message says how to start), or
                (segmentation) it has no segmentation form.
            PoolExhaustedError: every image is labelled.
        """
        with self.locked():
            self.reload()
            settings = self.settings
            kind = self.kind
            name = _check_strategy(strategy or settings.strategy, settings)
            _check_model(settings)
            options = dict(
                strategy_options if strategy_options is not None else settings.strategy_options.get(name, {})
            )
            n = int(n if n is not None else settings.query_size)
            if n < 1:
                raise ConfigError(f"n must be >= 1, got {n}")
            if int(seed) < 0:
                raise ConfigError(f"seed must be a non-negative integer, got {seed}")
            source = self.source
            ids, images = source.load()
            row_of = {item: i for i, item in enumerate(ids)}
            ledger = self.labels()
            missing = sorted(set(ledger) - set(row_of))
            if missing:
                logger.warning(
                    "%d labelled item(s) are no longer in %s and are ignored, e.g. %s",
                    len(missing),
                    source.path,
                    missing[0],
                )
            entries = sorted(((row_of[i], e) for i, e in ledger.items() if i in row_of), key=lambda p: p[0])
            labeled = np.array([r for r, _ in entries], dtype=np.int64)
            targets, labels_digest = kind.targets(entries, ids, images)
            key = {
                "strategy": name,
                "strategy_options": options,
                "seed": int(seed),
                "n": n,
                "labels": labels_digest,
                "settings": digest(
                    settings.model_dump(
                        mode="json", exclude={"label_studio_url_prefix", *kind.settings_digest_exclude}
                    )
                ),
                "images": digest({"ids": ids, "shape": list(images.shape)}),
            }
            done = self.round_count()
            last = self.round_meta(done - 1) if done else None
            rnd = (
                done - 1 if last is not None and last.get("key", {}).get("labels") == labels_digest else done
            )
            if rnd == done - 1 and last is not None and last.get("key") == key and not force:
                logger.info("round %d with these labels and settings is on disk; returning it", rnd)
                return _result_from_meta(last, self._rounds_dir() / str(rnd), reused=True)
            config = settings.loop_config(name, options, int(seed))
            ranking = rank_pool(images, labeled, targets, settings.build_task(), config, n, rnd)
            items = [
                RankedItem(
                    rank=k + 1,
                    item=ids[int(row)],
                    score=float(ranking.scores[k]),
                    predicted=settings.classes[int(ranking.predicted[k])]
                    if ranking.predicted is not None
                    else None,
                    confidence=float(ranking.confidence[k])
                    if ranking.confidence is not None
                    else float("nan"),
                )
                for k, row in enumerate(ranking.indices)
            ]
            info: dict[str, Any] = {
                "seconds": {k: round(v, 3) for k, v in ranking.seconds.items()},
                "train": None
                if ranking.train is None
                else {
                    "epochs": ranking.train.epochs,
                    "steps": ranking.train.steps,
                    "train_accuracy": ranking.train.train_accuracy,
                    "reached_target": ranking.train.reached_target,
                },
            }
            meta = {
                "format_version": FORMAT_VERSION,
                "task": settings.task,
                "round": rnd,
                "strategy": name,
                "strategy_options": options,
                "seed": int(seed),
                "n": n,
                "n_labeled": int(labeled.size),
                "n_pool": ranking.n_pool,
                "classes": list(settings.classes),
                "created_at": now(),
                "key": key,
                "info": info,
                "items": [r.to_json() for r in items],
            }
            chosen_images = [images[int(row)] for row in ranking.indices]
            directory = self._write_round(
                rnd, meta, items, chosen_images, ids, ranking.dynamics, ranking.maps, ranking.samples
            )
            logger.debug(
                "round %d: %d images to label written to %s (%s, %d labelled, %d candidates)",
                rnd,
                len(items),
                directory,
                name,
                labeled.size,
                ranking.n_pool,
            )
            return _result_from_meta(meta, directory, reused=False)

    def _write_round(
        self,
        rnd: int,
        meta: dict[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
        dynamics: Mapping[str, np.ndarray],
        maps: Mapping[str, np.ndarray] | None = None,
        samples: Mapping[str, np.ndarray] | None = None,
    ) -> Path:
        """Write round ``rnd``'s files into a fresh directory, then swap it in (query.json last)."""
        rounds = self._rounds_dir()
        rounds.mkdir(parents=True, exist_ok=True)
        final = rounds / str(rnd)
        staging = rounds / f".{rnd}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        self.kind.write_round_files(staging, meta, items, images, ids, dict(maps or {}))
        if dynamics:
            pool_ids = np.array([ids[int(i)] for i in dynamics["pool"]], dtype=str)
            atomic_savez(staging / "dynamics.npz", {"switches": dynamics["switches"], "items": pool_ids})
        if samples:  # the per-sample table, the rows named by their item ids
            table = dict(samples)
            table["sample_id"] = np.array([ids[int(i)] for i in samples["sample_id"]], dtype=str)
            write_csv(table, staging / "dynamics.csv")
        write_json(staging / "query.json", meta)
        self.write_label_studio_config()
        if final.exists():
            old = rounds / f".{rnd}.old"
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old)
        else:
            staging.rename(final)
        return final

    # ------------------------------------------------------------------------------------------ status

    def status(self) -> ProjectStatus:
        """Counts of images, labels per class (segmentation: images and pixels per class), rounds, and the
        latest query's unlabelled items."""
        self.reload()
        source = self.source
        ids = source.item_ids()
        present = set(ids)
        ledger = self.labels()
        entries = [entry for item, entry in ledger.items() if item in present]
        counts, pixel_counts, ignored = self.kind.counts(entries)
        rounds = self.round_count()
        pending: list[str] = []
        if rounds:
            meta = self.round_meta(rounds - 1) or {}
            pending = [r["item"] for r in meta.get("items", []) if r["item"] not in ledger]
        return ProjectStatus(
            root=self.root,
            images=source.path,
            kind=source.kind,
            n_items=len(ids),
            n_labeled=len(entries),
            class_counts=counts,
            rounds=rounds,
            pending=pending,
            missing=sorted(set(ledger) - present),
            media_root=self.media_root,
            label_studio_document_root=self.label_studio_document_root,
            task=self.settings.task,
            pixel_counts=pixel_counts,
            ignored_pixels=ignored,
            new_labels=sum(1 for e in entries if e.round >= rounds),
        )


def _result_from_meta(meta: Mapping[str, Any], directory: Path, *, reused: bool) -> QueryResult:
    return QueryResult(
        round=int(meta["round"]),
        strategy=str(meta["strategy"]),
        seed=int(meta["seed"]),
        items=[RankedItem.from_json(r) for r in meta["items"]],
        n_labeled=int(meta["n_labeled"]),
        n_pool=int(meta["n_pool"]),
        directory=directory,
        reused=reused,
        info=dict(meta.get("info", {})),
        task=str(meta.get("task", "classification")),
    )
