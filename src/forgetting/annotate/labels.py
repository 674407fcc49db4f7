"""What a labelling project's labels are, and everything that depends on it.

A project's task picks one *kind of labels* from :data:`LABEL_KINDS`, once:

* :class:`ClassLabels` (``classification``): one class name per image, from a CSV, a Label Studio export
  (single choices) or Python (:meth:`~forgetting.annotate.LabelingProject.add_labels`);
* :class:`MaskLabels` (``segmentation``): one mask of class ids per image, from a folder of mask files, an
  ``.npz``, a Label Studio export (brush annotations) or Python (``add_masks``), stored under ``masks/``.

Both implement the same verbs, so :mod:`~forgetting.annotate.project` reads the same for both: import a file
or Label Studio tasks, merge rows into the ledger (validated, all or nothing, idempotent), give the training
targets and their digest for a query, write a round's files (CSV, Label Studio tasks with the model's
pre-annotations, HTML page, maps), count labels for the status, and give the Label Studio labelling
configuration and predictions.

A kind works on its project (:class:`~forgetting.annotate.project.LabelingProject`): it reads the project's
settings, source and ledger, and writes through the project's ledger and settings writers, inside the
project's lock (taken by the caller of :meth:`LabelKind.apply`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from forgetting._csv import unquoted
from forgetting._io import atomic_savez, atomic_write_bytes
from forgetting.annotate import label_studio
from forgetting.annotate.exporters import (
    class_hex_colors,
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
    label_rows_from_tasks,
    mask_rows_from_tasks,
    read_label_file,
    read_label_studio_masks,
    read_mask_file,
    read_mask_source,
)
from forgetting.annotate.ledger import ImportSummary, LabelEntry, bullets, digest, now
from forgetting.annotate.results import RankedItem
from forgetting.annotate.sources import MaskIndex
from forgetting.exceptions import LabelConflictError, LabelImportError, ProjectError

if TYPE_CHECKING:
    from forgetting.annotate.project import LabelingProject

__all__ = ["LABEL_KINDS", "ClassLabels", "LabelKind", "MaskLabels", "label_kind"]

logger = logging.getLogger(__name__)

MASKS_DIR = "masks"
MEDIA_DIR = "media"
_DIGEST_IN_NAME = 12  # hex digits of a mask's digest in its stored file name


class LabelKind(ABC):
    """The labels of one kind of project (see the module docstring). Subclasses set the class attributes.

    Attributes:
        task: the project task this kind labels (``ProjectSettings.task``).
        default_model: the model a new project of this task gets.
        unit: what one label is called in messages (``"label"``, ``"mask"``).
        settings_digest_exclude: settings keys a query's digest leaves out (absent for this kind).
    """

    task: ClassVar[str]
    default_model: ClassVar[str]
    unit: ClassVar[str]
    settings_digest_exclude: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, project: LabelingProject) -> None:
        self.project = project

    # --------------------------------------------------------------------------------------- creation

    @classmethod
    def check_classes(cls, classes: Sequence[str]) -> None:
        """Raise :class:`ProjectError` when a new project of this kind cannot have these classes (any
        classes, by default)."""
        return

    @classmethod
    def settings_section(cls, *, ignore_index: int | None) -> dict[str, Any]:
        """Extra raw settings of a new project of this kind (e.g. ``[segmentation]``)."""
        return {}

    # -------------------------------------------------------------------------------------- importing

    @abstractmethod
    def import_file(self, path: str | Path, *, overwrite: bool, fmt: LabelFormat) -> ImportSummary:
        """Import the labels in ``path`` (see :meth:`LabelingProject.import_labels`)."""

    @abstractmethod
    def rows_from_label_studio(self, tasks: Sequence[Any], source: str) -> tuple[list[Any], int]:
        """The labels of Label Studio tasks with their annotations: ``(rows, skipped)`` for :meth:`apply`."""

    @abstractmethod
    def apply(self, rows: Sequence[Any], *, source: str, overwrite: bool, skipped: int) -> ImportSummary:
        """Validate ``rows`` and merge them into the ledger, all or nothing. Takes the project's lock."""

    def add_labels(self, labels: Mapping[str, str], *, overwrite: bool, source: str) -> ImportSummary:
        """``{item: class name}`` from Python (classification)."""
        raise self._wrong_kind("add_labels", "import_labels(FILE) / add_masks({item: mask})")

    def add_masks(
        self, masks: Mapping[str, np.ndarray | torch.Tensor], *, overwrite: bool, source: str
    ) -> ImportSummary:
        """``{item: mask}`` from Python (segmentation)."""
        raise self._wrong_kind("add_masks", "import_labels(FILE) / add_labels({item: class})")

    def _wrong_kind(self, what: str, instead: str) -> ProjectError:
        other = next(k.task for k in LABEL_KINDS.values() if k is not type(self))
        return ProjectError(
            f"{what} is for {other} projects; {self.project.root} is a {self.task} project: use {instead}"
        )

    def _check_task(self) -> None:
        """After the settings were reloaded: the task must still be this kind's."""
        if self.project.settings.task != self.task:
            raise ProjectError(
                f"{self.project.root}: the task changed to {self.project.settings.task!r} in the settings "
                f"during an import of {self.unit}s; nothing was imported"
            )

    # ----------------------------------------------------------------------------------------- rounds

    @abstractmethod
    def targets(
        self, entries: Sequence[tuple[int, LabelEntry]], ids: Sequence[str], images: torch.Tensor
    ) -> tuple[np.ndarray | torch.Tensor, str]:
        """The training targets of the labelled rows ``entries`` (``(row, entry)`` in row order) and a
        digest of them (with the classes): class ids int64 ``[L]``, or masks int64 ``[L, H, W]``."""

    @abstractmethod
    def write_round_files(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
        maps: Mapping[str, np.ndarray],
    ) -> None:
        """Write a round's files for annotators into ``staging`` (``query.json`` is written by the
        project)."""

    @abstractmethod
    def predictions(
        self, items: Sequence[RankedItem], maps: Mapping[str, np.ndarray], *, model_version: str
    ) -> list[dict[str, Any] | None]:
        """The Label Studio prediction of each ranked item (pre-annotation, and the score
        :func:`~forgetting.annotate.label_studio.rank_score`), ``None`` where the round has no model output
        for it. ``maps`` are the round's per-pixel arrays aligned with ``items`` (segmentation), else
        empty."""

    @abstractmethod
    def label_studio_config(self) -> str:
        """The Label Studio labelling interface for the project's classes."""

    # ----------------------------------------------------------------------------------------- status

    @abstractmethod
    def counts(self, entries: Sequence[LabelEntry]) -> tuple[dict[str, int], dict[str, int], int]:
        """``(class counts, pixel counts, ignored pixels)`` of the labelled ``entries``."""

    # ---------------------------------------------------------------------------------------- helpers

    def _write_media(self, items: Sequence[RankedItem], images: Sequence[Any], n_items: int) -> list[str]:
        """Write the PNGs annotators see (array sources only); their Label Studio URLs, aligned with
        ``items``."""
        project = self.project
        source = project.source
        urls = []
        for r, image in zip(items, images, strict=True):
            name = source.media_name(r.item, n_items)
            if source.kind != "folder":
                write_png(project.root / MEDIA_DIR / name, image)
            urls.append(project.image_url(name))
        return urls

    def _write_label_studio_tasks(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        urls: Sequence[str],
        maps: Mapping[str, np.ndarray],
    ) -> None:
        version = model_version(meta)
        write_json(
            staging / "label_studio.json",
            label_studio.tasks(
                items,
                urls,
                strategy=str(meta["strategy"]),
                round_=int(meta["round"]),
                predictions=self.predictions(items, maps, model_version=version),
            ),
        )


def model_version(meta: Mapping[str, Any]) -> str:
    """The Label Studio model version of a round: its number, strategy and a digest of its query key (new
    labels, another strategy, seed or size: another version, so Label Studio asks for new predictions)."""
    return f"forgetting-round-{meta['round']}-{meta['strategy']}-{digest(meta.get('key', {}))[:8]}"


# ------------------------------------------------------------------------------------------------------
# Classification


class ClassLabels(LabelKind):
    """One class name per image (see the module docstring)."""

    task = "classification"
    default_model = "small-cnn"
    unit = "label"
    settings_digest_exclude = frozenset({"segmentation"})

    def import_file(self, path: str | Path, *, overwrite: bool, fmt: LabelFormat) -> ImportSummary:
        if Path(path).expanduser().is_dir():
            raise LabelImportError(
                f"{path} is a folder; a classification project imports a CSV (item,label) or a Label Studio "
                "JSON export"
            )
        parsed = read_label_file(path, fmt=fmt)
        return self.apply(parsed.rows, source=Path(path).name, overwrite=overwrite, skipped=parsed.skipped)

    def rows_from_label_studio(self, tasks: Sequence[Any], source: str) -> tuple[list[Any], int]:
        parsed = label_rows_from_tasks(tasks, source)
        return list(parsed.rows), parsed.skipped

    def add_labels(self, labels: Mapping[str, str], *, overwrite: bool, source: str) -> ImportSummary:
        rows = [LabelRow(str(k), str(v), f"{source}[{k!r}]") for k, v in labels.items()]
        return self.apply(rows, source=source, overwrite=overwrite, skipped=0)

    def apply(self, rows: Sequence[Any], *, source: str, overwrite: bool, skipped: int) -> ImportSummary:
        project = self.project
        with project.locked():
            project.reload()
            self._check_task()
            index = project.item_index()
            known = set(project.settings.classes)
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
                    + bullets(clashes)
                    + "\nKeep one row per image (or matching labels) and import again; nothing was imported"
                )
            settings = project.settings
            classes = list(settings.classes)
            new_classes = sorted({label for label, _ in incoming.values()} - set(classes))
            if new_classes and settings.fixed_classes:
                bad = [f"{where}: {label!r}" for label, where in incoming.values() if label in new_classes]
                raise LabelImportError(
                    f"{source}: {len(bad)} label(s) are not among the project's classes {classes}:"
                    + bullets(bad)
                    + f"\nFix the labels, or add the class to `classes` in {project.manifest}; "
                    "nothing was imported"
                )
            ledger = project.labels()
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
                    + bullets(lines)
                    + "\nTo keep the project's labels, fix or remove these rows; to replace them, import "
                    "again with --overwrite (Python: overwrite=True). Nothing was imported"
                )
            round_ = project.round_count()
            stamp = now()
            added = unchanged = overwritten = 0
            for item, (label, _where) in incoming.items():
                if item not in ledger:
                    added += 1
                elif ledger[item].label == label:
                    unchanged += 1
                    continue
                else:
                    overwritten += 1
                ledger[item] = LabelEntry(item, label, source, round_, stamp)
            summary = ImportSummary(added, unchanged, overwritten, skipped, new_classes, source)
            if new_classes:
                project.save_settings(settings.model_copy(update={"classes": classes + new_classes}))
                logger.info("new classes from %s: %s", source, ", ".join(new_classes))
            if added or overwritten:
                project.write_ledger(ledger)
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
        src = self.project.source
        lines = [f"{row.where}: {row.ref!r}" for row in unknown]
        if src.kind == "folder":
            hint = f"item ids are paths relative to {src.path} (e.g. 'cats/001.png')"
        else:
            hint = f"item ids are row numbers 0..{n_items - 1} of {src.path} (or the written PNG names)"
        return (
            f"{source}: {len(unknown)} label(s) name images that are not in the project:"
            + bullets(lines)
            + f"\n{hint}; nothing was imported"
        )

    def targets(
        self, entries: Sequence[tuple[int, LabelEntry]], ids: Sequence[str], images: torch.Tensor
    ) -> tuple[np.ndarray | torch.Tensor, str]:
        project = self.project
        classes = project.settings.classes
        class_id = {c: k for k, c in enumerate(classes)}
        orphans = sorted({e.label for _, e in entries} - set(class_id))
        if orphans:
            raise ProjectError(
                f"labels {orphans} in {project.ledger_path} are not among the classes {classes} of "
                f"{project.manifest}; add them back to `classes`"
            )
        labels = np.array([class_id[e.label] for _, e in entries], dtype=np.int64)
        return labels, digest({"labels": [[ids[r], e.label] for r, e in entries], "classes": classes})

    def write_round_files(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
        maps: Mapping[str, np.ndarray],
    ) -> None:
        urls = self._write_media(items, images, len(ids))
        strategy, round_ = meta["strategy"], meta["round"]
        write_ranked_csv(staging / "query.csv", items, strategy=strategy, round_=round_)
        self._write_label_studio_tasks(staging, meta, items, urls, maps)
        notes = [
            f"Round {round_}: the {len(items)} images {strategy} ranks first among {meta['n_pool']} "
            f"unlabelled images ({meta['n_labeled']} labelled images so far; seed {meta['seed']}).",
            "Label them in query.csv (fill in the label column) or in Label Studio (label_studio.json), then "
            f"run: forgetting label {self.project.root} --import FILE",
        ]
        write_html(
            staging / "index.html", items, images, title=f"Round {round_}: images to label", notes=notes
        )

    def predictions(
        self, items: Sequence[RankedItem], maps: Mapping[str, np.ndarray], *, model_version: str
    ) -> list[dict[str, Any] | None]:
        return [
            None
            if r.predicted is None
            else label_studio.prediction(
                [label_studio.choice_result(r.predicted)],
                score=label_studio.rank_score(r.rank, len(items)),
                model_version=model_version,
            )
            for r in items
        ]

    def label_studio_config(self) -> str:
        return label_studio.choices_config(self.project.settings.classes)

    def counts(self, entries: Sequence[LabelEntry]) -> tuple[dict[str, int], dict[str, int], int]:
        counts = dict.fromkeys(self.project.settings.classes, 0)
        for entry in entries:
            counts[entry.label] = counts.get(entry.label, 0) + 1
        return counts, {}, 0


# ------------------------------------------------------------------------------------------------------
# Segmentation


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
        sha = hashlib.sha256(f"{h}x{w}:".encode() + canonical.astype("<i8").tobytes()).hexdigest()
        ignored = int(canonical.size - np.count_nonzero(labelled))
        return cls(canonical, sha, [int(v) for v in pixels], ignored, where)

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


class MaskLabels(LabelKind):
    """One mask of class ids per image (see the module docstring)."""

    task = "segmentation"
    default_model = "unet"
    unit = "mask"

    @classmethod
    def check_classes(cls, classes: Sequence[str]) -> None:
        if len(classes) < 2:
            raise ProjectError(
                "a segmentation project needs its classes up front, at least 2, in the order of their mask "
                "values (class id 0 first): --classes background,lesion (Python: classes=[...])"
            )

    @classmethod
    def settings_section(cls, *, ignore_index: int | None) -> dict[str, Any]:
        return {"segmentation": {"ignore_index": "none" if ignore_index is None else ignore_index}}

    @property
    def _class_ids(self) -> dict[str, int]:
        return {c: k for k, c in enumerate(self.project.settings.classes)}

    def import_file(self, path: str | Path, *, overwrite: bool, fmt: LabelFormat) -> ImportSummary:
        project = self.project
        location = Path(path).expanduser().resolve()
        if location.is_file() and (location.suffix.lower() == ".json" or fmt == "label-studio"):
            rows, skipped = read_label_studio_masks(
                location, self._class_ids, ignore_index=project.settings.ignore_index
            )
            return self.apply(rows, source=location.name, overwrite=overwrite, skipped=skipped)
        src = project.source
        if src.kind == "folder" and location.is_dir() and location.is_relative_to(src.path):
            raise LabelImportError(
                f"{location} lies inside the image folder {src.path}, so its files count as images. Keep the "
                f"masks in a folder of their own (e.g. {project.root / 'returned'}); nothing was imported"
            )
        if location.is_relative_to(project.root / MASKS_DIR):
            raise LabelImportError(
                f"{location} is where the project keeps the masks it imported; put returned masks in another "
                f"folder (e.g. {project.root / 'returned'}); nothing was imported"
            )
        return self.apply(read_mask_source(location), source=location.name, overwrite=overwrite, skipped=0)

    def rows_from_label_studio(self, tasks: Sequence[Any], source: str) -> tuple[list[Any], int]:
        return mask_rows_from_tasks(
            tasks, source, self._class_ids, ignore_index=self.project.settings.ignore_index
        )

    def add_masks(
        self, masks: Mapping[str, np.ndarray | torch.Tensor], *, overwrite: bool, source: str
    ) -> ImportSummary:
        rows = [
            MaskRow(
                str(item),
                f"{source}[{item!r}]",
                array=mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask),
            )
            for item, mask in masks.items()
        ]
        return self.apply(rows, source=source, overwrite=overwrite, skipped=0)

    def apply(self, rows: Sequence[Any], *, source: str, overwrite: bool, skipped: int) -> ImportSummary:
        project = self.project
        with project.locked():
            project.reload()
            self._check_task()
            settings = project.settings
            k, ignore = len(settings.classes), settings.ignore_index
            src = project.source
            ids = src.item_ids()
            index = project.item_index(ids)
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
                    + bullets(problems)
                    + f"\nMasks hold one class id per image pixel: 0..{k - 1} for {settings.classes}"
                    + (f", {ignore} for unlabelled pixels" if ignore is not None else "")
                    + "; nothing was imported"
                )
            if clashes:
                raise LabelConflictError(
                    f"{source} gives different masks to the same image:"
                    + bullets(clashes)
                    + "\nKeep one mask per image and import again; nothing was imported"
                )
            empty = [item for item, m in incoming.items() if not any(m.pixels)]
            for item in empty:  # no labelled pixel: not labelled yet, like an empty label cell
                del incoming[item]
            skipped += len(empty)
            self._warn_binary_masks(incoming)

            ledger = project.labels()
            conflicts = [
                (item, ledger[item], mask)
                for item, mask in incoming.items()
                if item in ledger and ledger[item].digest != mask.digest
            ]
            if conflicts and not overwrite:
                lines = [self._mask_conflict_line(item, old, new) for item, old, new in conflicts]
                raise LabelConflictError(
                    f"{len(conflicts)} mask(s) in {source} differ from the project's:"
                    + bullets(lines)
                    + "\nTo keep the project's masks, remove these files; to replace them, import again with "
                    "--overwrite (Python: overwrite=True). Nothing was imported"
                )
            round_ = project.round_count()
            stamp = now()
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
                rel = mask.store(project.root, f"{MASKS_DIR}/{names.stem(item)}")
                ledger[item] = LabelEntry(
                    item, "", source, round_, stamp, rel, mask.digest, mask.pixels, mask.ignored
                )
            if added or overwritten:
                project.write_ledger(ledger)
            for rel in replaced - {e.mask for e in ledger.values()}:
                (project.root / rel).unlink(missing_ok=True)
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
        src = self.project.source
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
            + bullets(lines)
            + f"\n{hint}; nothing was imported"
        )

    def _mask_conflict_line(self, item: str, old: LabelEntry, new: _Mask) -> str:
        detail = ""
        if old.mask:
            try:
                stored = read_mask_file(self.project.root / old.mask)
            except LabelImportError:
                stored = None
            if stored is not None and stored.shape == new.array.shape:
                changed = int(np.count_nonzero(stored.astype(np.int64) != new.array))
                detail = f" in {changed} of {new.array.size} pixels"
        return f"{item!r}: {new.where} differs{detail} from the project's mask (from {old.source})"

    def _warn_binary_masks(self, incoming: Mapping[str, _Mask]) -> None:
        """Warn of 0/255 binary masks: in a two-class project with ignore index 255 the foreground would be
        dropped silently."""
        settings = self.project.settings
        ignore = settings.ignore_index
        if len(settings.classes) != 2 or ignore is None or not incoming:
            return
        masks = list(incoming.values())
        if all(m.pixels[1] == 0 for m in masks) and any(m.ignored for m in masks):
            logger.warning(
                "the imported masks hold class 0 and the ignore index %d only, no pixel of class %r: if %d "
                "marks the foreground (a 0/255 binary mask), save the masks as 0/1 and import them again "
                "with --overwrite",
                ignore,
                settings.classes[1],
                ignore,
            )

    def load_mask(self, item: str) -> np.ndarray:
        """The stored mask of a labelled item (see :meth:`LabelingProject.load_mask`)."""
        entry = self.project.labels().get(item)
        if entry is None or entry.mask is None:
            raise ProjectError(f"{item!r} has no mask in {self.project.root}")
        return read_mask_file(self.project.root / entry.mask)

    def targets(
        self, entries: Sequence[tuple[int, LabelEntry]], ids: Sequence[str], images: torch.Tensor
    ) -> tuple[np.ndarray | torch.Tensor, str]:
        masks = self._load_masks([e for _, e in entries], (int(images.shape[-2]), int(images.shape[-1])))
        classes = self.project.settings.classes
        return masks, digest({"masks": [[ids[r], e.digest] for r, e in entries], "classes": classes})

    def _load_masks(self, entries: Sequence[LabelEntry], shape: tuple[int, int]) -> torch.Tensor:
        """The stored masks of ``entries`` as int64 ``[L, H, W]`` at the images' (possibly resized) size."""
        project = self.project
        size = project.settings.images.size
        out = torch.empty((len(entries), *shape), dtype=torch.int64)
        for row, entry in enumerate(entries):
            if entry.mask is None:
                raise ProjectError(
                    f"{project.ledger_path}: {entry.item!r} has a class label, not a mask; was `task` "
                    f"changed in {project.manifest.name}? A segmentation project's ledger holds masks only"
                )
            try:
                mask = torch.from_numpy(read_mask_file(project.root / entry.mask).astype(np.int64))
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
        k, ignore = len(project.settings.classes), project.settings.ignore_index
        bad = (out < 0) | (out >= k)
        if ignore is not None:
            bad &= out != ignore
        if bool(bad.any()):
            row = int(torch.nonzero(bad.flatten(1).any(1))[0])
            raise ProjectError(
                f"the mask of {entries[row].item!r} holds values outside the class ids 0..{k - 1} of "
                f"{project.manifest.name} (were classes removed?); restore the classes or import fixed masks "
                "with --overwrite"
            )
        return out

    def write_round_files(
        self,
        staging: Path,
        meta: Mapping[str, Any],
        items: Sequence[RankedItem],
        images: Sequence[Any],
        ids: Sequence[str],
        maps: Mapping[str, np.ndarray],
    ) -> None:
        project = self.project
        source = project.source
        settings = project.settings
        names = MaskIndex(ids, [source.media_name(i, len(ids)) for i in ids])
        urls = self._write_media(items, images, len(ids))  # annotators draw on these
        strategy, round_ = meta["strategy"], meta["round"]
        mask_files = [names.stem(r.item) + ".png" for r in items]
        write_segmentation_csv(staging / "query.csv", items, mask_files, strategy=strategy, round_=round_)
        self._write_label_studio_tasks(staging, meta, items, urls, maps)
        ids_text = ", ".join(f"{c} = {name}" for c, name in enumerate(settings.classes))
        ignore = settings.ignore_index
        where = source.path if source.kind == "folder" else project.root / MEDIA_DIR
        notes = [
            f"Round {round_}: the {len(items)} images {strategy} ranks first among {meta['n_pool']} "
            f"unlabelled images ({meta['n_labeled']} labelled images so far; seed {meta['seed']}).",
            f"Draw a mask for each image ({where}): one class id per pixel ({ids_text}"
            + (f"; {ignore} = not labelled" if ignore is not None else "")
            + "), the image's size, saved as an 8-bit grayscale or palette PNG (or an .npy integer array). "
            "Name each mask as the mask_file column of query.csv, put them in one folder, then run: "
            f"forgetting label {project.root} FOLDER",
            "Or paint them in Label Studio: import label_studio.json (the model's masks are pre-annotations) "
            f"into a project with the interface {project.label_studio_config_path.name}, export the "
            f"annotations as JSON, then run: forgetting label {project.root} EXPORT.json",
        ]
        if not maps:
            notes.append(f"{strategy} ranks without a model: no prediction or score maps this round.")
        write_segmentation_html(
            staging / "index.html",
            items,
            images,
            dict(maps),
            classes=settings.classes,
            title=f"Round {round_}: images to label",
            notes=notes,
        )
        if maps:
            atomic_savez(
                staging / "maps.npz", {**maps, "items": np.array([r.item for r in items], dtype=str)}
            )

    def predictions(
        self, items: Sequence[RankedItem], maps: Mapping[str, np.ndarray], *, model_version: str
    ) -> list[dict[str, Any] | None]:
        pred = maps.get("pred")
        if pred is None:
            return [None] * len(items)
        classes = self.project.settings.classes
        return [
            label_studio.prediction(
                label_studio.brush_results(pred[i], classes),
                score=label_studio.rank_score(r.rank, len(items)),
                model_version=model_version,
            )
            for i, r in enumerate(items)
        ]

    def label_studio_config(self) -> str:
        classes = self.project.settings.classes
        return label_studio.brush_config(classes, class_hex_colors(len(classes)))

    def counts(self, entries: Sequence[LabelEntry]) -> tuple[dict[str, int], dict[str, int], int]:
        classes = self.project.settings.classes
        counts = dict.fromkeys(classes, 0)
        pixel_counts = dict.fromkeys(classes, 0)
        ignored = 0
        for entry in entries:
            for name, n_pixels in zip(classes, entry.pixels or [], strict=False):
                pixel_counts[name] += n_pixels
                counts[name] += n_pixels > 0
            ignored += entry.ignored or 0
        return counts, pixel_counts, ignored


#: The kind of labels of each project task, chosen once from ``ProjectSettings.task``.
LABEL_KINDS: dict[str, type[LabelKind]] = {kind.task: kind for kind in (ClassLabels, MaskLabels)}


def label_kind(task: str) -> type[LabelKind]:
    """The kind of labels of ``task``.

    Raises:
        ProjectError: no kind labels ``task``.
    """
    try:
        return LABEL_KINDS[task]
    except KeyError:
        raise ProjectError(f"task {task!r} is not known; choose one of {', '.join(LABEL_KINDS)}") from None
