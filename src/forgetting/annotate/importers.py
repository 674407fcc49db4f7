"""Read the labels that annotators return: a CSV, or a Label Studio JSON export.

Both readers return :class:`LabelRow` records (a reference to an image, a class name, and where in the file
the row came from, for error messages). Resolving references to item ids and checking the classes is the
project's job (:meth:`forgetting.annotate.LabelingProject.import_labels`).

CSV
    A header row, then one row per image. The image column is the first of ``item``, ``filename``,
    ``file``, ``image``, ``path``; the label column the first of ``label``, ``class``. Other columns are
    ignored, so the ranked ``query.csv`` of a round, with its ``label`` column filled in, imports as it is.
    Rows with an empty label are skipped (not yet labelled). UTF-8, with or without a byte-order mark.

Label Studio
    The JSON export (a list of tasks). Each task's image is ``data.item`` (written by
    :func:`forgetting.annotate.exporters.label_studio_tasks`) or else ``data.image``. Its label is the single
    choice of its annotations' ``choices`` results (``from_name`` ``label`` when the task has several choice
    controls). Cancelled (skipped) annotations and tasks without an annotation are skipped. Annotations of one
    task that disagree raise :class:`~forgetting.exceptions.LabelConflictError`. The ``JSON_MIN`` export
    (flat objects with ``image``/``item`` and ``label``) is read too.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from forgetting.exceptions import LabelConflictError, LabelImportError

__all__ = [
    "ITEM_COLUMNS",
    "LABEL_COLUMNS",
    "LabelRow",
    "ParsedLabels",
    "read_csv_labels",
    "read_label_file",
    "read_label_studio_export",
]

logger = logging.getLogger(__name__)

ITEM_COLUMNS: tuple[str, ...] = ("item", "filename", "file", "image", "path")
LABEL_COLUMNS: tuple[str, ...] = ("label", "class")
LABEL_STUDIO_FROM_NAME = "label"

LabelFormat = Literal["auto", "csv", "label-studio"]


@dataclass(frozen=True)
class LabelRow:
    """One returned label.

    Attributes:
        ref: how the file names the image (an item id, a path or a URL).
        label: the class name.
        where: the row's place in the file, for messages (``"labels.csv line 4"``, ``"task 12"``).
    """

    ref: str
    label: str
    where: str


@dataclass(frozen=True)
class ParsedLabels:
    """What a label file holds.

    Attributes:
        rows: the labelled rows, in file order.
        skipped: rows or tasks without a label (empty cell, no annotation, cancelled annotation).
    """

    rows: list[LabelRow]
    skipped: int = 0


def read_label_file(path: str | Path, *, fmt: LabelFormat = "auto") -> ParsedLabels:
    """Read a CSV (``.csv``, ``.tsv``, ``.txt``) or a Label Studio export (``.json``).

    Raises:
        LabelImportError: the file is missing, of an unknown kind, or malformed (naming the row or task).
        LabelConflictError: annotations of one Label Studio task disagree.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise LabelImportError(f"label file {file} does not exist")
    if fmt == "auto":
        suffix = file.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            fmt = "csv"
        elif suffix == ".json":
            fmt = "label-studio"
        else:
            raise LabelImportError(
                f"{file}: cannot tell the format from the suffix {suffix!r}; use a .csv (item,label) or a "
                "Label Studio .json export, or pass the format explicitly"
            )
    if fmt == "csv":
        return read_csv_labels(file)
    if fmt == "label-studio":
        return read_label_studio_export(file)
    raise LabelImportError(f"unknown label format {fmt!r}; choose 'auto', 'csv' or 'label-studio'")


def read_csv_labels(path: str | Path) -> ParsedLabels:
    """Read ``item,label`` rows (see the module docstring for accepted column names)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelImportError(f"{file}: cannot read as UTF-8 text ({exc})") from exc
    delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise LabelImportError(
            f"{file}: the file is empty; expected a header row such as 'item,label'"
        ) from None
    item_col = next((header.index(c) for c in ITEM_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    if item_col is None or label_col is None:
        raise LabelImportError(
            f"{file} line 1: needs an image column ({' or '.join(ITEM_COLUMNS)}) and a label column "
            f"({' or '.join(LABEL_COLUMNS)}); found columns {header}"
        )
    rows: list[LabelRow] = []
    skipped = 0
    for line, record in enumerate(reader, start=2):
        if not record or all(not cell.strip() for cell in record):
            continue
        item = record[item_col].strip() if item_col < len(record) else ""
        label = record[label_col].strip() if label_col < len(record) else ""
        if not item:
            raise LabelImportError(f"{file} line {line}: empty {header[item_col]!r} cell")
        if not label:
            skipped += 1
            continue
        rows.append(LabelRow(item, label, f"{file.name} line {line}"))
    return ParsedLabels(rows, skipped)


def read_label_studio_export(path: str | Path, *, from_name: str = LABEL_STUDIO_FROM_NAME) -> ParsedLabels:
    """Read a Label Studio JSON (or ``JSON_MIN``) export of a single-choice classification project."""
    file = Path(path)
    try:
        tasks = json.loads(file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelImportError(f"{file}: not a readable JSON file ({exc})") from exc
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise LabelImportError(
            f"{file}: a Label Studio export is a JSON list of tasks, got {type(tasks).__name__}"
        )
    rows: list[LabelRow] = []
    skipped = 0
    for position, task in enumerate(tasks):
        where = _task_name(file, task, position)
        if not isinstance(task, dict):
            raise LabelImportError(f"{where}: a task must be a JSON object, got {type(task).__name__}")
        ref = _task_image(task, where)
        label = _task_label(task, where, ref, from_name)
        if label is None:
            skipped += 1
            continue
        rows.append(LabelRow(ref, label, where))
    return ParsedLabels(rows, skipped)


def _task_name(file: Path, task: Any, position: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"{file.name} task {task_id}" if task_id is not None else f"{file.name} task #{position + 1}"


def _task_image(task: dict[str, Any], where: str) -> str:
    data = task.get("data", task)
    if not isinstance(data, dict):
        raise LabelImportError(f"{where}: field 'data' must be an object with an 'image' entry")
    for key in ("item", "image"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool) and key == "item":
            return str(value)
    raise LabelImportError(f"{where}: no image reference (expected data.item or data.image)")


def _task_label(task: dict[str, Any], where: str, ref: str, from_name: str) -> str | None:
    if "annotations" not in task and "data" not in task:  # JSON_MIN: flat objects
        value = task.get(from_name)
        if isinstance(value, dict):
            value = value.get("choices")
        return _single_choice(value, where) if value not in (None, "", []) else None
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise LabelImportError(f"{where}: field 'annotations' must be a list")
    found: list[tuple[str, str]] = []  # (label, annotation name)
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise LabelImportError(f"{where}: annotation {k} must be an object")
        if annotation.get("was_cancelled"):
            continue
        name = f"annotation {annotation.get('id', k)}"
        result = annotation.get("result") or []
        if not isinstance(result, list):
            raise LabelImportError(f"{where} {name}: field 'result' must be a list")
        choices = [
            r
            for r in result
            if isinstance(r, dict) and isinstance(r.get("value"), dict) and "choices" in r["value"]
        ]
        named = [r for r in choices if r.get("from_name") == from_name]
        if len({r.get("from_name") for r in choices}) > 1:
            if not named:
                raise LabelImportError(
                    f"{where} {name}: several choice controls "
                    f"({sorted(str(r.get('from_name')) for r in choices)}) and none named {from_name!r}"
                )
            choices = named
        if not choices:
            continue
        labels = {_single_choice(r["value"]["choices"], f"{where} {name}") for r in choices}
        if len(labels) > 1:
            raise LabelImportError(
                f"{where} {name}: several choices {sorted(labels)}; use one choice per image"
            )
        found.append((labels.pop(), name))
    if not found:
        return None
    labels = sorted({label for label, _ in found})
    if len(labels) > 1:
        detail = ", ".join(f"{n} says {label!r}" for label, n in found)
        raise LabelConflictError(
            f"{where} (image {ref!r}): annotations disagree ({detail}). Resolve it in Label Studio (delete "
            "or fix one annotation) and export again, or remove the task from the file"
        )
    return labels[0]


def _single_choice(value: Any, where: str) -> str:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabelImportError(f"{where}: 'choices' must be a list of class names, got {value!r}")
    names = [v.strip() for v in value if v.strip()]
    if len(names) != 1:
        raise LabelImportError(
            f"{where}: expected exactly one chosen class, got {names}; use a single-choice control"
        )
    return names[0]
