"""A labelling project: a directory that holds the settings, the labels so far and every query's output.

Layout::

    <project>/
      forgetting.toml            settings: image source, classes, model, strategy, training (editable)
      labels.jsonl               the label ledger: one JSON object per labelled item
      label_studio_config.xml    a Label Studio labelling interface for the classes
      media/                     PNGs of array rows, shown to annotators (array sources only)
      masks/                     segmentation: the imported masks (<image without extension>.<digest>.png)
      rounds/<k>/                query k: query.csv, label_studio.json, index.html, query.json
                                 (+ dynamics.npz with the pool's switch counts and dynamics.csv, the
                                 per-sample table of forgetting.exports, when the pool was tracked;
                                 segmentation: no label_studio.json, + maps.npz with the queried images'
                                 predicted classes, pixel scores and switch maps)

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

Segmentation (``task = "segmentation"``): labels are masks of class ids ``0..K-1`` per pixel, with
``[segmentation] ignore_index`` (255 by default) for unlabelled pixels. They are imported from a folder of
mask files or an ``.npz`` (:func:`~forgetting.annotate.importers.read_mask_source`), checked against the
image size and the classes, and stored under ``<project>/masks/``, named after the image plus the first 12
hex digits of the mask's digest: a changed mask is a new file, so the ledger (written last) never points at
a half-replaced one. A ledger entry then has ``mask`` (that path), ``digest`` (SHA-256 of the mask's shape
and values), ``pixels`` (labelled pixels per class id) and ``ignored`` (unlabelled pixels) instead of a
``label``. The same mask imported again changes nothing; a different mask for a labelled image raises
:class:`~forgetting.exceptions.LabelConflictError` unless ``overwrite``. A query trains on the masks and
ranks the unlabelled images with :func:`~forgetting.annotate.session.rank_pool` and the project's task.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from forgetting._csv import unquoted
from forgetting._io import atomic_savez, atomic_write_bytes, atomic_write_text, make_directory
from forgetting._lock import LOCK_FILE, directory_lock
from forgetting.annotate.exporters import (
    label_studio_config,
    label_studio_tasks,
    png_bytes,
    write_html,
    write_json,
    write_png,
    write_ranked_csv,
    write_segmentation_csv,
    write_segmentation_html,
)
from forgetting.annotate.importers import (
    LabelFormat,
    LabelRow,
    MaskRow,
    check_mask,
    read_label_file,
    read_mask_file,
    read_mask_source,
)
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
    TASKS,
    ProjectSettings,
    dump_settings,
    load_settings,
    validate_settings,
)
from forgetting.annotate.sources import ImageSource, ItemIndex, MaskIndex
from forgetting.exceptions import (
    ConfigError,
    LabelConflictError,
    LabelImportError,
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
ROUNDS_DIR = "rounds"
MEDIA_DIR = "media"
MASKS_DIR = "masks"
_DIGEST_IN_NAME = 12  # hex digits of a mask's digest in its stored file name
_SHOWN_PROBLEMS = 10


# --------------------------------------------------------------------------------------------------------
# Ledger and summaries


@dataclass(frozen=True)
class LabelEntry:
    """One labelled item in the ledger (see the module docstring).

    Classification entries have a ``label``; segmentation entries have ``label == ""`` and ``mask`` (the
    stored mask, relative to the project), ``digest``, ``pixels`` (labelled pixels per class id ``0..K-1``)
    and ``ignored`` (pixels with the ignore index).
    """

    item: str
    label: str
    source: str
    round: int
    imported_at: str
    mask: str | None = None
    digest: str | None = None
    pixels: list[int] | None = None
    ignored: int | None = None


@dataclass(frozen=True)
class ImportSummary:
    """What an import changed.

    Attributes:
        added: items labelled for the first time.
        unchanged: items that already had the same label (re-imports are no-ops).
        overwritten: items whose label was replaced (only with ``overwrite``).
        skipped: rows or tasks without a label (segmentation: masks without a labelled pixel).
        new_classes: class names added to the project.
        source: the file (or ``"python"``) the labels came from.
    """

    added: int
    unchanged: int
    overwritten: int
    skipped: int
    new_classes: list[str]
    source: str

    @property
    def changed(self) -> bool:
        return bool(self.added or self.overwritten or self.new_classes)


@dataclass(frozen=True)
class ProjectStatus:
    """Where a project stands.

    Attributes:
        root: the project directory.
        images: the image source path; ``kind`` is ``folder`` or ``arrays``.
        n_items: images in the source.
        n_labeled: labelled images (present in the source).
        class_counts: class name -> labelled images (segmentation: labelled images that show the class).
        rounds: number of queries made (rounds ``0..rounds-1`` are on disk).
        pending: items of the latest query that have no label yet.
        missing: labelled item ids that are no longer in the source (ignored when training).
        media_root: the directory Label Studio must serve the images from (its local-files document root).
        task: ``classification`` or ``segmentation``.
        pixel_counts: segmentation: class name -> labelled pixels, over the labelled images.
        ignored_pixels: segmentation: pixels of the labelled images with the ignore index.
    """

    root: Path
    images: Path
    kind: str
    n_items: int
    n_labeled: int
    class_counts: dict[str, int]
    rounds: int
    pending: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    media_root: Path | None = None
    task: str = "classification"
    pixel_counts: dict[str, int] = field(default_factory=dict)
    ignored_pixels: int = 0


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


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
    if task not in TASKS:
        raise ProjectError(f"task {task!r} is not known; choose one of {', '.join(TASKS)}")
    segmentation = task == "segmentation"
    source = ImageSource.from_path(images, key=image_key, size=size)
    ids = source.item_ids()
    if isinstance(classes, str):
        classes = [c for c in (p.strip() for p in classes.split(",")) if c]
    if segmentation and len(classes or []) < 2:
        raise ProjectError(
            "a segmentation project needs its classes up front, at least 2, in the order of their mask "
            "values (class id 0 first): --classes background,lesion (Python: classes=[...])"
        )
    model = model or ("unet" if segmentation else "small-cnn")
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
    }
    if segmentation:
        raw["segmentation"] = {"ignore_index": "none" if ignore_index is None else ignore_index}
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
        project._write_label_studio_config()
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
        """The directory the image URLs of the Label Studio file are relative to."""
        return self.source.path if self.source.kind == "folder" else self.root / MEDIA_DIR

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on the project for the duration of an import or a query (POSIX only; see
        :func:`forgetting._lock.directory_lock`: a second process gets a :class:`ProjectError` naming the
        holder's PID, and a lock left by a killed process is taken over)."""
        with directory_lock(self.root, what="an import or query", error=ProjectError):
            yield

    def _reload(self) -> None:
        self.settings = load_settings(self.root / MANIFEST_FILE)

    def _save_settings(self) -> None:
        atomic_write_text(self.root / MANIFEST_FILE, dump_settings(self.settings))

    def _write_label_studio_config(self) -> None:
        if self.settings.task == "segmentation":
            return  # no Label Studio export for masks (yet)
        atomic_write_text(self.root / LABEL_STUDIO_CONFIG_FILE, label_studio_config(self.settings.classes))

    def _item_index(self, ids: Sequence[str] | None = None) -> ItemIndex:
        source = self.source
        ids = source.item_ids() if ids is None else list(ids)
        return ItemIndex(ids, [source.media_name(i, len(ids)) for i in ids])

    # ------------------------------------------------------------------------------------------ ledger

    def labels(self) -> dict[str, LabelEntry]:
        """The ledger: item id -> :class:`LabelEntry`, in import order."""
        path = self.root / LEDGER_FILE
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

    def _write_ledger(self, entries: Mapping[str, LabelEntry]) -> None:
        lines = ({k: v for k, v in asdict(e).items() if v is not None} for e in entries.values())
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        atomic_write_text(self.root / LEDGER_FILE, text)

    def _require_task(self, task: str, what: str) -> None:
        if self.settings.task != task:
            other = (
                "import_labels(FILE) / add_labels({item: class})"
                if task == "segmentation"
                else "import_labels(MASKS) / add_masks({item: mask})"
            )
            raise ProjectError(
                f"{what} is for {task} projects; {self.root} is a {self.settings.task} project: use {other}"
            )

    def import_labels(
        self, path: str | Path, *, overwrite: bool = False, fmt: LabelFormat = "auto"
    ) -> ImportSummary:
        """Add the labels of a CSV (``item,label``) or a Label Studio JSON export to the project.

        All or nothing: if any row is bad, nothing is imported. Importing the same labels again is a no-op.

        Segmentation projects import masks instead: ``path`` is a folder of mask files or an ``.npz`` (see
        :func:`~forgetting.annotate.importers.read_mask_source`), with the same rules.

        Args:
            path: the file. The ranked ``query.csv`` of a round with its ``label`` column filled in works.
                Segmentation: a folder of masks (named as the ``mask_file`` column of ``query.csv``) or an
                ``.npz`` with ``masks`` and ``ids``.
            overwrite: replace the labels of items that already have a different one.
            fmt: ``auto`` (by suffix), ``csv`` or ``label-studio`` (classification).

        Raises:
            LabelImportError: the file is malformed, names an unknown image, or (with fixed classes) an
                unknown class. The message names the rows.
            LabelConflictError: a label contradicts the project's (without ``overwrite``) or another row of
                the file. The message lists item, old and new label, and how to resolve it.
        """
        if self.settings.task == "segmentation":
            return self._import_masks(path, overwrite=overwrite)
        if Path(path).expanduser().is_dir():
            raise LabelImportError(
                f"{path} is a folder; a classification project imports a CSV (item,label) or a Label Studio "
                "JSON export"
            )
        parsed = read_label_file(path, fmt=fmt)
        return self._apply(parsed.rows, source=Path(path).name, overwrite=overwrite, skipped=parsed.skipped)

    def add_labels(
        self, labels: Mapping[str, str], *, overwrite: bool = False, source: str = "python"
    ) -> ImportSummary:
        """Add ``{item id: class name}`` labels from Python, with the same rules as :meth:`import_labels`."""
        self._require_task("classification", "add_labels")
        rows = [LabelRow(str(k), str(v), f"{source}[{k!r}]") for k, v in labels.items()]
        return self._apply(rows, source=source, overwrite=overwrite, skipped=0)

    def _apply(
        self, rows: Sequence[LabelRow], *, source: str, overwrite: bool, skipped: int
    ) -> ImportSummary:
        with self._lock():
            self._reload()
            index = self._item_index()
            known = set(self.settings.classes)
            incoming: dict[str, tuple[str, str]] = {}  # item -> (label, where)
            unknown: list[LabelRow] = []
            clashes: list[str] = []
            for row in rows:
                item = index.resolve(row.ref)
                if item is None:
                    unknown.append(row)
                    continue
                label = row.label.strip()
                plain = unquoted(label)
                if plain is not None and label not in known and plain in known:
                    label = plain  # a class name our CSV neutralised against formula injection
                if item in incoming and incoming[item][0] != label:
                    clashes.append(
                        f"{item!r}: {incoming[item][0]!r} ({incoming[item][1]}) vs {label!r} ({row.where})"
                    )
                    continue
                incoming.setdefault(item, (label, row.where))
            if unknown:
                raise LabelImportError(self._unknown_items_message(unknown, source, len(index)))
            if clashes:
                raise LabelConflictError(
                    f"{source} gives different labels to the same image:"
                    + _bullets(clashes)
                    + "\nKeep one row per image (or matching labels) and import again; nothing was imported"
                )
            classes = list(self.settings.classes)
            new_classes = sorted({label for label, _ in incoming.values()} - set(classes))
            if new_classes and self.settings.fixed_classes:
                bad = [f"{where}: {label!r}" for label, where in incoming.values() if label in new_classes]
                raise LabelImportError(
                    f"{source}: {len(bad)} label(s) are not among the project's classes {classes}:"
                    + _bullets(bad)
                    + f"\nFix the labels, or add the class to `classes` in {self.root / MANIFEST_FILE}; "
                    "nothing was imported"
                )
            ledger = self.labels()
            conflicts = [
                (item, ledger[item], label, where)
                for item, (label, where) in incoming.items()
                if item in ledger and ledger[item].label != label
            ]
            if conflicts and not overwrite:
                lines = [
                    f"{item!r}: the project has {old.label!r} (from {old.source}), {where} says {new!r}"
                    for item, old, new, where in conflicts
                ]
                raise LabelConflictError(
                    f"{len(conflicts)} label(s) in {source} contradict the project's labels:"
                    + _bullets(lines)
                    + "\nTo keep the project's labels, fix or remove these rows; to replace them, import "
                    "again with --overwrite (Python: overwrite=True). Nothing was imported"
                )
            round_ = self._round_count()
            now = _now()
            added = unchanged = overwritten = 0
            for item, (label, _where) in incoming.items():
                if item not in ledger:
                    added += 1
                elif ledger[item].label == label:
                    unchanged += 1
                    continue
                else:
                    overwritten += 1
                ledger[item] = LabelEntry(item, label, source, round_, now)
            summary = ImportSummary(added, unchanged, overwritten, skipped, new_classes, source)
            if new_classes:
                self.settings = self.settings.model_copy(update={"classes": classes + new_classes})
                self._save_settings()
                self._write_label_studio_config()
                logger.info("new classes from %s: %s", source, ", ".join(new_classes))
            if added or overwritten:
                self._write_ledger(ledger)
            logger.debug(
                "%s: %d added, %d unchanged, %d overwritten, %d without a label",
                source,
                added,
                unchanged,
                overwritten,
                skipped,
            )
            return summary

    def _unknown_items_message(self, unknown: Sequence[LabelRow], source: str, n_items: int) -> str:
        src = self.source
        lines = [f"{row.where}: {row.ref!r}" for row in unknown]
        if src.kind == "folder":
            hint = f"item ids are paths relative to {src.path} (e.g. 'cats/001.png')"
        else:
            hint = f"item ids are row numbers 0..{n_items - 1} of {src.path} (or the written PNG names)"
        return (
            f"{source}: {len(unknown)} label(s) name images that are not in the project:"
            + _bullets(lines)
            + f"\n{hint}; nothing was imported"
        )

    # ------------------------------------------------------------------------------------------- masks

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
        self._require_task("segmentation", "add_masks")
        rows = [
            MaskRow(
                str(item),
                f"{source}[{item!r}]",
                array=mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask),
            )
            for item, mask in masks.items()
        ]
        return self._apply_masks(rows, source=source, overwrite=overwrite)

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

    def _import_masks(self, path: str | Path, *, overwrite: bool) -> ImportSummary:
        location = Path(path).expanduser().resolve()
        src = self.source
        if src.kind == "folder" and location.is_dir() and location.is_relative_to(src.path):
            raise LabelImportError(
                f"{location} lies inside the image folder {src.path}, so its files count as images. Keep the "
                f"masks in a folder of their own (e.g. {self.root / 'returned'}); nothing was imported"
            )
        if location.is_relative_to(self.root / MASKS_DIR):
            raise LabelImportError(
                f"{location} is where the project keeps the masks it imported; put returned masks in another "
                f"folder (e.g. {self.root / 'returned'}); nothing was imported"
            )
        rows = read_mask_source(location)
        return self._apply_masks(rows, source=location.name, overwrite=overwrite)

    def _apply_masks(self, rows: Sequence[MaskRow], *, source: str, overwrite: bool) -> ImportSummary:
        with self._lock():
            self._reload()
            self._require_task("segmentation", "importing masks")
            settings = self.settings
            k, ignore = len(settings.classes), settings.ignore_index
            src = self.source
            ids = src.item_ids()
            index = self._item_index(ids)
            names = MaskIndex(ids, [src.media_name(i, len(ids)) for i in ids])
            resolved: list[tuple[str, MaskRow]] = []
            unknown: list[MaskRow] = []
            for row in rows:
                item = index.resolve(row.ref) or names.resolve(row.ref)
                if item is None:
                    unknown.append(row)
                else:
                    resolved.append((item, row))
            if unknown:
                raise LabelImportError(self._unknown_masks_message(unknown, source, names))

            sizes = src.image_sizes(sorted({item for item, _ in resolved}))
            incoming: dict[str, _Mask] = {}
            problems: list[str] = []
            clashes: list[str] = []
            for item, row in resolved:
                try:
                    array = row.read()
                except LabelImportError as exc:
                    problems.append(str(exc))
                    continue
                problem = check_mask(
                    array, shape=sizes[item], num_classes=k, ignore_index=ignore, where=row.where, item=item
                )
                if problem is not None:
                    problems.append(problem)
                    continue
                mask = _Mask.build(array, k, ignore, row.where)
                if item in incoming:
                    if incoming[item].digest != mask.digest:
                        clashes.append(f"{item!r}: {incoming[item].where} vs {row.where}")
                    continue
                incoming[item] = mask
            if problems:
                raise LabelImportError(
                    f"{source}: {len(problems)} mask(s) cannot be imported:"
                    + _bullets(problems)
                    + f"\nMasks hold one class id per image pixel: 0..{k - 1} for {settings.classes}"
                    + (f", {ignore} for unlabelled pixels" if ignore is not None else "")
                    + "; nothing was imported"
                )
            if clashes:
                raise LabelConflictError(
                    f"{source} gives different masks to the same image:"
                    + _bullets(clashes)
                    + "\nKeep one mask per image and import again; nothing was imported"
                )
            empty = [item for item, m in incoming.items() if not any(m.pixels)]
            for item in empty:  # no labelled pixel: not labelled yet, like an empty label cell
                del incoming[item]
            skipped = len(empty)
            self._warn_binary_masks(incoming)

            ledger = self.labels()
            conflicts = [
                (item, ledger[item], mask)
                for item, mask in incoming.items()
                if item in ledger and ledger[item].digest != mask.digest
            ]
            if conflicts and not overwrite:
                lines = [self._mask_conflict_line(item, old, new) for item, old, new in conflicts]
                raise LabelConflictError(
                    f"{len(conflicts)} mask(s) in {source} differ from the project's:"
                    + _bullets(lines)
                    + "\nTo keep the project's masks, remove these files; to replace them, import again with "
                    "--overwrite (Python: overwrite=True). Nothing was imported"
                )
            round_ = self._round_count()
            now = _now()
            added = unchanged = overwritten = 0
            replaced: set[str] = set()
            for item, mask in incoming.items():
                old = ledger.get(item)
                if old is None:
                    added += 1
                elif old.digest == mask.digest:
                    unchanged += 1
                    continue
                else:
                    overwritten += 1
                    if old.mask:
                        replaced.add(old.mask)
                rel = mask.store(self.root, f"{MASKS_DIR}/{names.stem(item)}")
                ledger[item] = LabelEntry(
                    item, "", source, round_, now, rel, mask.digest, mask.pixels, mask.ignored
                )
            if added or overwritten:
                self._write_ledger(ledger)
            for rel in replaced - {e.mask for e in ledger.values()}:
                (self.root / rel).unlink(missing_ok=True)
            logger.debug(
                "%s: %d masks added, %d unchanged, %d overwritten, %d without labelled pixels",
                source,
                added,
                unchanged,
                overwritten,
                skipped,
            )
            return ImportSummary(added, unchanged, overwritten, skipped, [], source)

    def _unknown_masks_message(self, unknown: Sequence[MaskRow], source: str, names: MaskIndex) -> str:
        lines = [f"{row.where}: {row.ref!r}" for row in unknown]
        src = self.source
        example = next(iter(names.ambiguous.values()), None)
        hint = (
            "a mask file is named after its image without the extension, relative to the mask folder (the "
            "mask_file column of a round's query.csv): inline/003.png or .npy for image inline/003.png"
        )
        if src.kind == "arrays":
            hint = (
                f"a mask is named after its image's row of {src.path} (17.png, 017.png or 17.npy for row 17)"
            )
        if example:
            hint += (
                f"; images that differ only in extension ({', '.join(example)}) take the full name "
                "(a.png.png)"
            )
        return (
            f"{source}: {len(unknown)} mask(s) name images that are not in the project:"
            + _bullets(lines)
            + f"\n{hint}; nothing was imported"
        )

    def _mask_conflict_line(self, item: str, old: LabelEntry, new: _Mask) -> str:
        detail = ""
        if old.mask:
            try:
                stored = read_mask_file(self.root / old.mask)
            except LabelImportError:
                stored = None
            if stored is not None and stored.shape == new.array.shape:
                changed = int(np.count_nonzero(stored.astype(np.int64) != new.array))
                detail = f" in {changed} of {new.array.size} pixels"
        return f"{item!r}: {new.where} differs{detail} from the project's mask (from {old.source})"

    def _warn_binary_masks(self, incoming: Mapping[str, _Mask]) -> None:
        """Warn of 0/255 binary masks: in a two-class project with ignore index 255 the foreground would be
        dropped silently."""
        ignore = self.settings.ignore_index
        if len(self.settings.classes) != 2 or ignore is None or not incoming:
            return
        masks = list(incoming.values())
        if all(m.pixels[1] == 0 for m in masks) and any(m.ignored for m in masks):
            logger.warning(
                "the imported masks hold class 0 and the ignore index %d only, no pixel of class %r: if %d "
                "marks the foreground (a 0/255 binary mask), save the masks as 0/1 and import them again "
                "with --overwrite",
                ignore,
                self.settings.classes[1],
                ignore,
            )

    def _load_masks(self, entries: Sequence[LabelEntry], shape: tuple[int, int]) -> torch.Tensor:
        """The stored masks of ``entries`` as int64 ``[L, H, W]`` at the images' (possibly resized) size."""
        size = self.settings.images.size
        out = torch.empty((len(entries), *shape), dtype=torch.int64)
        for row, entry in enumerate(entries):
            if entry.mask is None:
                raise ProjectError(
                    f"{self.root / LEDGER_FILE}: {entry.item!r} has a class label, not a mask; was `task` "
                    f"changed in {MANIFEST_FILE}? A segmentation project's ledger holds masks only"
                )
            try:
                mask = torch.from_numpy(read_mask_file(self.root / entry.mask).astype(np.int64))
            except LabelImportError as exc:
                raise ProjectError(
                    f"the stored mask of {entry.item!r} is unreadable: {exc}; import it again "
                    "with --overwrite"
                ) from None
            if tuple(mask.shape) != shape:
                if size is None:
                    raise ProjectError(
                        f"the mask of {entry.item!r} is {mask.shape[0]}x{mask.shape[1]} but the images are "
                        f"{shape[0]}x{shape[1]}; did the image change? Import its mask again with --overwrite"
                    )
                mask = F.interpolate(mask[None, None].float(), size=shape, mode="nearest")[0, 0].long()
            out[row] = mask
        k, ignore = len(self.settings.classes), self.settings.ignore_index
        bad = (out < 0) | (out >= k)
        if ignore is not None:
            bad &= out != ignore
        if bool(bad.any()):
            row = int(torch.nonzero(bad.flatten(1).any(1))[0])
            raise ProjectError(
                f"the mask of {entries[row].item!r} holds values outside the class ids 0..{k - 1} of "
                f"{MANIFEST_FILE} (were classes removed?); restore the classes or import fixed masks with "
                "--overwrite"
            )
        return out

    # ------------------------------------------------------------------------------------------ rounds

    def _rounds_dir(self) -> Path:
        return self.root / ROUNDS_DIR

    def _round_meta(self, k: int) -> dict[str, Any] | None:
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

    def _round_count(self) -> int:
        """Rounds 0..k-1 complete on disk (a round is complete when its query.json exists)."""
        k = 0
        while self._round_meta(k) is not None:
            k += 1
        return k

    def round_result(self, k: int) -> QueryResult:
        """The stored result of round ``k``.

        Raises:
            ProjectError: round ``k`` has not been queried.
        """
        meta = self._round_meta(k)
        if meta is None:
            raise ProjectError(f"{self.root} has no round {k}; run a query first")
        return _result_from_meta(meta, self._rounds_dir() / str(k), reused=True)

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
            A :class:`QueryResult`; its files are ``query.csv``, ``label_studio.json`` and ``index.html``
            (segmentation: ``query.csv`` with a ``mask_file`` column, ``index.html`` with the prediction,
            pixel-score and switch maps, ``maps.npz``; no ``label_studio.json``).

        Raises:
            ProjectError: the strategy needs labels and there are none (the message says how to start), or
                (segmentation) it has no segmentation form.
            PoolExhaustedError: every image is labelled.
        """
        with self._lock():
            self._reload()
            settings = self.settings
            segmentation = settings.task == "segmentation"
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
            if segmentation:
                labels = np.zeros(0, dtype=np.int64)
                digest = _digest(
                    {"masks": [[ids[r], e.digest] for r, e in entries], "classes": settings.classes}
                )
            else:
                class_id = {c: k for k, c in enumerate(settings.classes)}
                orphans = sorted({e.label for _, e in entries} - set(class_id))
                if orphans:
                    raise ProjectError(
                        f"labels {orphans} in {self.root / LEDGER_FILE} are not among the classes "
                        f"{settings.classes} of {self.root / MANIFEST_FILE}; add them back to `classes`"
                    )
                labels = np.array([class_id[e.label] for _, e in entries], dtype=np.int64)
                digest = _digest(
                    {"labels": [[ids[r], e.label] for r, e in entries], "classes": settings.classes}
                )
            key = {
                "strategy": name,
                "strategy_options": options,
                "seed": int(seed),
                "n": n,
                "labels": digest,
                "settings": _digest(
                    settings.model_dump(
                        mode="json",
                        exclude={"label_studio_url_prefix", *(() if segmentation else ("segmentation",))},
                    )
                ),
                "images": _digest({"ids": ids, "shape": list(images.shape)}),
            }
            done = self._round_count()
            last = self._round_meta(done - 1) if done else None
            rnd = done - 1 if last is not None and last.get("key", {}).get("labels") == digest else done
            if rnd == done - 1 and last is not None and last.get("key") == key and not force:
                logger.info("round %d with these labels and settings is on disk; returning it", rnd)
                return _result_from_meta(last, self._rounds_dir() / str(rnd), reused=True)
            config = settings.loop_config(name, options, int(seed))
            targets: np.ndarray | torch.Tensor = labels
            if segmentation:
                targets = self._load_masks(
                    [e for _, e in entries], (int(images.shape[-2]), int(images.shape[-1]))
                )
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
                "created_at": _now(),
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
        if self.settings.task == "segmentation":
            self._write_segmentation_files(staging, meta, items, images, ids, dict(maps or {}))
        else:
            self._write_classification_files(staging, meta, items, images, ids)
        if dynamics:
            pool_ids = np.array([ids[int(i)] for i in dynamics["pool"]], dtype=str)
            atomic_savez(staging / "dynamics.npz", {"switches": dynamics["switches"], "items": pool_ids})
        if samples:  # the per-sample table, the rows named by their item ids
            table = dict(samples)
            table["sample_id"] = np.array([ids[int(i)] for i in samples["sample_id"]], dtype=str)
            write_csv(table, staging / "dynamics.csv")
        write_json(staging / "query.json", meta)
        self._write_label_studio_config()
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

    def _write_classification_files(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
    ) -> None:
        source = self.source
        urls = []
        for r, image in zip(items, images, strict=True):
            name = source.media_name(r.item, len(ids))
            if source.kind != "folder":
                write_png(self.root / MEDIA_DIR / name, image)
            urls.append(self.settings.label_studio_url_prefix + urllib.parse.quote(name))
        strategy, round_ = meta["strategy"], meta["round"]
        write_ranked_csv(staging / "query.csv", items, strategy=strategy, round_=round_)
        write_json(
            staging / "label_studio.json", label_studio_tasks(items, urls, strategy=strategy, round_=round_)
        )
        notes = [
            f"Round {round_}: the {len(items)} images {strategy} ranks first among {meta['n_pool']} "
            f"unlabelled images ({meta['n_labeled']} labelled images so far; seed {meta['seed']}).",
            "Label them in query.csv (fill in the label column) or in Label Studio (label_studio.json), then "
            f"run: forgetting label {self.root} --import FILE",
        ]
        write_html(
            staging / "index.html", items, images, title=f"Round {round_}: images to label", notes=notes
        )

    def _write_segmentation_files(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
        maps: dict[str, np.ndarray],
    ) -> None:
        source = self.source
        settings = self.settings
        names = MaskIndex(ids, [source.media_name(i, len(ids)) for i in ids])
        if source.kind != "folder":  # annotators draw on these
            for r, image in zip(items, images, strict=True):
                write_png(self.root / MEDIA_DIR / source.media_name(r.item, len(ids)), image)
        strategy, round_ = meta["strategy"], meta["round"]
        mask_files = [names.stem(r.item) + ".png" for r in items]
        write_segmentation_csv(staging / "query.csv", items, mask_files, strategy=strategy, round_=round_)
        ids_text = ", ".join(f"{c} = {name}" for c, name in enumerate(settings.classes))
        ignore = settings.ignore_index
        where = source.path if source.kind == "folder" else self.root / MEDIA_DIR
        notes = [
            f"Round {round_}: the {len(items)} images {strategy} ranks first among {meta['n_pool']} "
            f"unlabelled images ({meta['n_labeled']} labelled images so far; seed {meta['seed']}).",
            f"Draw a mask for each image ({where}): one class id per pixel ({ids_text}"
            + (f"; {ignore} = not labelled" if ignore is not None else "")
            + "), the image's size, saved as an 8-bit grayscale or palette PNG (or an .npy integer array). "
            "Name each mask as the mask_file column of query.csv, put them in one folder, then run: "
            f"forgetting label {self.root} FOLDER",
            "No Label Studio file for segmentation projects: draw the masks in any tool that saves class "
            "ids.",
        ]
        if not maps:
            notes.append(f"{strategy} ranks without a model: no prediction or score maps this round.")
        write_segmentation_html(
            staging / "index.html",
            items,
            images,
            maps,
            classes=settings.classes,
            title=f"Round {round_}: images to label",
            notes=notes,
        )
        if maps:
            atomic_savez(
                staging / "maps.npz", {**maps, "items": np.array([r.item for r in items], dtype=str)}
            )

    # ------------------------------------------------------------------------------------------ status

    def status(self) -> ProjectStatus:
        """Counts of images, labels per class (segmentation: images and pixels per class), rounds, and the
        latest query's unlabelled items."""
        self._reload()
        source = self.source
        ids = source.item_ids()
        present = set(ids)
        ledger = self.labels()
        classes = self.settings.classes
        counts = {c: 0 for c in classes}
        pixel_counts = {c: 0 for c in classes} if self.settings.task == "segmentation" else {}
        ignored = 0
        for item, entry in ledger.items():
            if item not in present:
                continue
            if entry.pixels is not None:
                for name, n_pixels in zip(classes, entry.pixels, strict=False):
                    pixel_counts[name] += n_pixels
                    counts[name] += n_pixels > 0
                ignored += entry.ignored or 0
            else:
                counts[entry.label] = counts.get(entry.label, 0) + 1
        n_labeled = sum(1 for item in ledger if item in present)
        rounds = self._round_count()
        pending: list[str] = []
        if rounds:
            meta = self._round_meta(rounds - 1) or {}
            pending = [r["item"] for r in meta.get("items", []) if r["item"] not in ledger]
        return ProjectStatus(
            root=self.root,
            images=source.path,
            kind=source.kind,
            n_items=len(ids),
            n_labeled=n_labeled,
            class_counts=counts,
            rounds=rounds,
            pending=pending,
            missing=sorted(set(ledger) - present),
            media_root=self.media_root,
            task=self.settings.task,
            pixel_counts=pixel_counts,
            ignored_pixels=ignored,
        )


@dataclass(frozen=True)
class _Mask:
    """A validated mask on its way into the project.

    Attributes:
        array: the class ids, ``[H, W]`` in the smallest unsigned dtype that holds them and the ignore index
            (uint8 for up to 256 classes with ignore index 255: stored as PNG; else ``.npy``).
        digest: SHA-256 hex of the shape and the values (independent of the input's dtype).
        pixels: labelled pixels per class id ``0..K-1``; ``ignored``: pixels with the ignore index.
        where: where it came from, for messages.
    """

    array: np.ndarray
    digest: str
    pixels: list[int]
    ignored: int
    where: str

    @classmethod
    def build(cls, array: np.ndarray, num_classes: int, ignore_index: int | None, where: str) -> _Mask:
        top = max(num_classes - 1, ignore_index or 0)
        dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.int64
        canonical = np.ascontiguousarray(array.astype(dtype))
        labelled = canonical != ignore_index if ignore_index is not None else np.ones(canonical.shape, bool)
        pixels = np.bincount(canonical[labelled].astype(np.int64), minlength=num_classes)[:num_classes]
        h, w = canonical.shape
        digest = hashlib.sha256(f"{h}x{w}:".encode() + canonical.astype("<i8").tobytes()).hexdigest()
        ignored = int(canonical.size - np.count_nonzero(labelled))
        return cls(canonical, digest, [int(v) for v in pixels], ignored, where)

    def store(self, root: Path, stem: str) -> str:
        """Write the mask (if that file is not there yet) as ``<stem>.<digest prefix>.png`` (uint8) or
        ``.npy``; returns the path relative to ``root``."""
        suffix = ".png" if self.array.dtype == np.uint8 else ".npy"
        rel = f"{stem}.{self.digest[:_DIGEST_IN_NAME]}{suffix}"
        path = root / rel
        if not path.is_file():
            if suffix == ".png":
                atomic_write_bytes(path, png_bytes(self.array[None]))
            else:
                buffer = io.BytesIO()
                np.save(buffer, self.array)
                atomic_write_bytes(path, buffer.getvalue())
        return rel


def _bullets(lines: Sequence[str]) -> str:
    """The first :data:`_SHOWN_PROBLEMS` of ``lines`` as an indented list (each on its own line), plus how
    many more there are."""
    return "\n  - " + "\n  - ".join(lines[:_SHOWN_PROBLEMS]) + _more(len(lines))


def _more(total: int) -> str:
    return f"\n  ... and {total - _SHOWN_PROBLEMS} more" if total > _SHOWN_PROBLEMS else ""


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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
