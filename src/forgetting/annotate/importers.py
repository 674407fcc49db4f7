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

Masks (segmentation projects)
    A folder of mask files, or an ``.npz``. In a folder, every ``.png`` (8- or 16-bit grayscale, or palette:
    the pixel values are the class ids; an RGB file whose three channels are equal is read as grayscale) and
    ``.npy`` (a 2-D integer array) is a mask; its path relative to the folder, without the extension, names
    the image (``inline/003.png`` or ``inline/003.npy`` is the mask of image ``inline/003.png`` or
    ``inline/003.jpg``). JPEG files are refused: lossy compression changes class ids. An ``.npz`` holds
    ``masks`` (``[n, H, W]`` integers) and ``ids`` (``[n]`` item ids: paths or row numbers).
    :func:`read_mask_source` lists them (:class:`MaskRow`, read lazily); :func:`check_mask` validates one
    against its image's size and the project's classes.

Label Studio masks (segmentation projects)
    The JSON export of a ``BrushLabels`` project: each annotation's brush results (RLE, one class each) are
    painted into one mask (:func:`forgetting.annotate.label_studio.brush_mask`; unpainted pixels get the
    ignore index). :func:`read_label_studio_masks` lists one :class:`MaskRow` per annotation, decoded when
    read; annotations of one task that differ are a conflict the project reports.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from forgetting._io import NUMPY_READ_ERRORS, describe_numpy_error
from forgetting.annotate.label_studio import BRUSH_TYPES, FROM_NAME, brush_mask
from forgetting.data.image_files import open_image
from forgetting.exceptions import LabelConflictError, LabelImportError

__all__ = [
    "ITEM_COLUMNS",
    "LABEL_COLUMNS",
    "MASK_SUFFIXES",
    "LabelRow",
    "MaskRow",
    "ParsedLabels",
    "check_mask",
    "label_rows_from_tasks",
    "load_label_studio_tasks",
    "mask_rows_from_tasks",
    "read_csv_labels",
    "read_label_file",
    "read_label_studio_export",
    "read_label_studio_masks",
    "read_mask_file",
    "read_mask_source",
]

logger = logging.getLogger(__name__)

ITEM_COLUMNS: tuple[str, ...] = ("item", "filename", "file", "image", "path")
LABEL_COLUMNS: tuple[str, ...] = ("label", "class")
LABEL_STUDIO_FROM_NAME = FROM_NAME

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
    records = _csv_records(file, text, delimiter)
    try:
        _, first = next(records)
    except StopIteration:
        raise LabelImportError(
            f"{file}: the file is empty; expected a header row such as 'item,label'"
        ) from None
    header = [h.strip().lower() for h in first]
    item_col = next((header.index(c) for c in ITEM_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    if item_col is None or label_col is None:
        raise LabelImportError(
            f"{file} line 1: needs an image column ({' or '.join(ITEM_COLUMNS)}) and a label column "
            f"({' or '.join(LABEL_COLUMNS)}); found columns {header}"
        )
    rows: list[LabelRow] = []
    skipped = 0
    for line, record in records:
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


def _csv_records(file: Path, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(line of the record's start, cells)`` of a CSV text, strictly: a malformed record (an unterminated
    quote, text after a closing quote, a NUL byte) raises :class:`LabelImportError` naming its line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise LabelImportError(
                f"{file} line {start}: not valid CSV ({exc}); a cell that opens a quote must close it "
                '("cat"), and a quote inside a quoted cell is written twice (""). Nothing was imported'
            ) from None
        yield start, record


def load_label_studio_tasks(path: str | Path) -> list[Any]:
    """The tasks of a Label Studio JSON (or ``JSON_MIN``) export: a list (a single task object is one task).

    Raises:
        LabelImportError: the file is unreadable, not JSON, or not a list of tasks.
    """
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
    return tasks


def read_label_studio_export(path: str | Path, *, from_name: str = LABEL_STUDIO_FROM_NAME) -> ParsedLabels:
    """Read a Label Studio JSON (or ``JSON_MIN``) export of a single-choice classification project."""
    file = Path(path)
    return label_rows_from_tasks(load_label_studio_tasks(file), file.name, from_name=from_name)


def label_rows_from_tasks(
    tasks: Sequence[Any], source: str, *, from_name: str = LABEL_STUDIO_FROM_NAME
) -> ParsedLabels:
    """The single-choice labels of Label Studio tasks (an export's list, or a webhook's task with its
    annotation); ``source`` names them in messages."""
    rows: list[LabelRow] = []
    skipped = 0
    for position, task in enumerate(tasks):
        where = _task_name(source, task, position)
        if not isinstance(task, dict):
            raise LabelImportError(f"{where}: a task must be a JSON object, got {type(task).__name__}")
        ref = _task_image(task, where)
        label = _task_label(task, where, ref, from_name)
        if label is None:
            skipped += 1
            continue
        rows.append(LabelRow(ref, label, where))
    return ParsedLabels(rows, skipped)


def _task_name(source: str, task: Any, position: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"{source} task {task_id}" if task_id is not None else f"{source} task #{position + 1}"


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
            if "choices" not in value:
                raise LabelImportError(
                    f'{where}: {from_name!r} must be a class name or an object like {{"choices": '
                    f'["cat"]}}, got {value!r:.80}; nothing was imported'
                )
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
        choices = []
        for j, r in enumerate(result):
            if not isinstance(r, dict):
                raise LabelImportError(
                    f"{where} {name}: result {j} must be an object, got {type(r).__name__} {r!r:.80}"
                )
            value = r.get("value")
            if isinstance(value, dict) and "choices" in value:
                choices.append(r)
            elif r.get("type") == "choices" or r.get("from_name") == from_name:
                raise LabelImportError(
                    f"{where} {name}: result {j} ({r.get('from_name', 'no from_name')!r}) has no choice: "
                    f'\'value\' must be an object like {{"choices": ["cat"]}}, got {value!r:.80}. Export '
                    "the project again from Label Studio (JSON), or fix the task; nothing was imported"
                )
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


# --------------------------------------------------------------------------------------------------------
# Masks (segmentation projects)

#: File suffixes (lower case) read as masks in a mask folder.
MASK_SUFFIXES: tuple[str, ...] = (".png", ".npy")
_LOSSY_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
# PIL modes whose pixel values are the class ids as they are.
_INDEX_MODES = frozenset({"L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_MASK_FORMATS = (
    "a folder of mask files (.png with class ids as 8-bit grayscale or palette values, or .npy integer "
    "arrays, named after the images), an .npz with arrays `masks` [n, H, W] and `ids` [n], or a Label Studio "
    "JSON export of brush annotations"
)


@dataclass(frozen=True)
class MaskRow:
    """One returned mask.

    Attributes:
        ref: how the source names the image: a mask file's path relative to its folder without the extension
            (``inline/003``), or an item id of an ``.npz`` / a Python mapping.
        where: the mask's place, for messages (``masks/inline/003.png``, ``labels.npz ids[4]``).
        path: the mask file (folders), read by :meth:`read`.
        array: the mask itself (``.npz`` and Python), any integer dtype ``[H, W]``.
        decoder: makes the mask when read (Label Studio brush annotations, decoded lazily so that every bad
            annotation is reported at once).
    """

    ref: str
    where: str
    path: Path | None = None
    array: np.ndarray | None = None
    decoder: Callable[[], np.ndarray] | None = None

    def read(self) -> np.ndarray:
        """The mask as a 2-D integer array (see :func:`read_mask_file`)."""
        if self.decoder is not None:
            return _as_mask_array(self.decoder(), self.where)
        if self.array is not None:
            return _as_mask_array(np.asarray(self.array), self.where)
        assert self.path is not None
        return read_mask_file(self.path, where=self.where)


def read_mask_source(path: str | Path) -> list[MaskRow]:
    """The masks in a folder of mask files or in an ``.npz`` (see the module docstring), in sorted order.

    Raises:
        LabelImportError: ``path`` is missing, of another kind (a CSV or a Label Studio export), holds no
            masks, holds JPEG masks, or is an ``.npz`` without ``masks`` and ``ids``.
    """
    source = Path(path).expanduser()
    if source.is_dir():
        return _read_mask_folder(source)
    if not source.exists():
        raise LabelImportError(f"masks {source} do not exist; pass {_MASK_FORMATS}")
    if source.suffix.lower() == ".npz":
        return _read_mask_npz(source)
    if source.suffix.lower() == ".json":
        raise LabelImportError(
            f"{source}: a Label Studio export needs the project's classes to decode; import it with "
            "LabelingProject.import_labels (or `forgetting label`), or read it with read_label_studio_masks"
        )
    raise LabelImportError(
        f"{source}: a segmentation project imports masks, not {source.suffix or 'suffix-less'} files; pass "
        f"{_MASK_FORMATS}. The round's query.csv lists the images to label and, in its mask_file column, "
        "the name each mask file should have"
    )


def _read_mask_folder(folder: Path) -> list[MaskRow]:
    rows: list[MaskRow] = []
    lossy: list[str] = []
    ignored = 0
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        suffix = file.suffix.lower()
        if suffix in MASK_SUFFIXES:
            rows.append(MaskRow(rel.with_suffix("").as_posix(), f"{folder.name}/{rel.as_posix()}", path=file))
        elif suffix in _LOSSY_SUFFIXES:
            lossy.append(rel.as_posix())
        else:
            ignored += 1
    if lossy:
        raise LabelImportError(
            f"{folder}: {len(lossy)} JPEG mask(s), e.g. {lossy[0]!r}: JPEG compression changes the class ids "
            "at region borders. Export the masks as PNG (8-bit grayscale or palette, pixel value = class id) "
            "or as .npy; nothing was imported"
        )
    if not rows:
        raise LabelImportError(f"{folder} holds no mask files (.png or .npy); pass {_MASK_FORMATS}")
    if ignored:
        logger.info("%s: %d file(s) that are not .png or .npy masks were ignored", folder, ignored)
    return rows


def _read_mask_npz(path: Path) -> list[MaskRow]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            id_key = next((k for k in ("ids", "items") if k in names), None)
            if "masks" not in names or id_key is None:
                raise LabelImportError(
                    f"{path}: expected arrays `masks` [n, H, W] and `ids` [n] (the item ids of the images); "
                    f"arrays found: {', '.join(names) or 'none'}. Write it with "
                    "np.savez(path, masks=masks, ids=np.array(item_ids))"
                )
            masks = archive["masks"]
            ids = archive[id_key]
    except LabelImportError:
        raise
    except NUMPY_READ_ERRORS as exc:
        raise LabelImportError(f"{path}: not a readable .npz file ({describe_numpy_error(exc)})") from None
    if masks.ndim != 3 or ids.ndim != 1 or ids.shape[0] != masks.shape[0]:
        raise LabelImportError(
            f"{path}: `masks` must be [n, H, W] and `{id_key}` [n] with the same n; got masks "
            f"{list(masks.shape)} and {id_key} {list(ids.shape)}"
        )
    return [
        MaskRow(str(ref).strip(), f"{path.name} {id_key}[{k}]", array=masks[k])
        for k, ref in enumerate(ids.tolist())
    ]


def read_label_studio_masks(
    path: str | Path,
    class_ids: Mapping[str, int],
    *,
    ignore_index: int | None,
    from_name: str | None = None,
) -> tuple[list[MaskRow], int]:
    """The brush masks of a Label Studio JSON export, one :class:`MaskRow` per annotation (decoded when read).

    Args:
        class_ids: class name -> class id (the brush labels must be among them).
        ignore_index: the value of pixels no region paints (``None``: every pixel must be painted).
        from_name: read only this brush control (default: every brush control).

    Returns:
        ``(rows, skipped)``: skipped counts tasks without an annotation that paints anything (cancelled,
        none yet, or choices only).

    Raises:
        LabelImportError: the file is unreadable or a task has no image reference.
    """
    file = Path(path)
    return mask_rows_from_tasks(
        load_label_studio_tasks(file), file.name, class_ids, ignore_index=ignore_index, from_name=from_name
    )


def mask_rows_from_tasks(
    tasks: Sequence[Any],
    source: str,
    class_ids: Mapping[str, int],
    *,
    ignore_index: int | None,
    from_name: str | None = None,
) -> tuple[list[MaskRow], int]:
    """The brush masks of Label Studio tasks (an export's list, or a webhook's task with its annotation):
    ``(rows, skipped)`` as :func:`read_label_studio_masks` returns them."""
    rows: list[MaskRow] = []
    skipped = 0
    for position, task in enumerate(tasks):
        where = _task_name(source, task, position)
        if not isinstance(task, dict):
            raise LabelImportError(f"{where}: a task must be a JSON object, got {type(task).__name__}")
        ref = _task_image(task, where)
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise LabelImportError(f"{where}: field 'annotations' must be a list")
        found = 0
        for k, annotation in enumerate(annotations):
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            result = annotation.get("result") or []
            if not isinstance(result, list):
                raise LabelImportError(
                    f"{where} annotation {annotation.get('id', k)}: 'result' must be a list"
                )
            if not any(isinstance(r, dict) and str(r.get("type", "")).lower() in BRUSH_TYPES for r in result):
                continue
            name = f"{where} annotation {annotation.get('id', k)}"

            def decode(result: list[Any] = result, name: str = name) -> np.ndarray:
                mask = brush_mask(
                    result, class_ids, ignore_index=ignore_index, where=name, from_name=from_name
                )
                if mask is None:  # brush results with empty regions only: nothing painted
                    raise LabelImportError(f"{name}: its brush regions are empty")
                return mask

            rows.append(MaskRow(ref, name, decoder=decode))
            found += 1
        skipped += found == 0
    return rows, skipped


def read_mask_file(path: str | Path, *, where: str | None = None) -> np.ndarray:
    """Read one mask file: a PNG (grayscale, palette, or RGB with equal channels; opaque) or an ``.npy``.

    Returns:
        The class ids, an integer ``[H, W]`` array (uint8 for 8-bit PNGs, the file's dtype for ``.npy``).

    Raises:
        LabelImportError: unreadable, colour, transparent, floating-point or not 2-D; the message names the
            file and how to save it.
    """
    file = Path(path)
    where = where or str(file)
    if file.suffix.lower() == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise LabelImportError(
                f"{where}: not a readable .npy file ({describe_numpy_error(exc)})"
            ) from None
        return _as_mask_array(array, where)
    with open_image(file, where=where, error=LabelImportError) as img:
        mode = img.mode
        try:
            array = np.asarray(img)
        except OSError as exc:
            raise LabelImportError(f"{where}: cannot read the image ({exc})") from exc
    if mode == "1":
        return array.astype(np.uint8)
    if mode in _INDEX_MODES:
        return _as_mask_array(array, where)
    if mode in ("RGB", "RGBA", "LA"):
        colour = array[..., :-1] if mode in ("RGBA", "LA") else array
        if mode in ("RGBA", "LA") and not bool(np.all(array[..., -1] == 255)):
            raise LabelImportError(
                f"{where}: the mask has transparent pixels; mark unlabelled pixels with the project's ignore "
                "index instead, and save the class ids as an 8-bit grayscale or palette PNG"
            )
        if colour.shape[-1] == 1 or bool(np.all(colour == colour[..., :1])):
            return np.ascontiguousarray(colour[..., 0])
        raise LabelImportError(
            f"{where}: a colour ({mode}) image: masks hold one class id per pixel. Map each colour to its "
            "class id (0..K-1 in the order of the project's classes) and save an 8-bit grayscale or palette "
            "PNG, or an .npy integer array"
        )
    raise LabelImportError(
        f"{where}: PNG mode {mode!r} is not a mask format; save the class ids as an 8-bit grayscale or "
        "palette PNG"
    )


def _as_mask_array(array: np.ndarray, where: str) -> np.ndarray:
    """A 2-D integer mask: a bool array becomes 0/1, a singleton channel axis is dropped."""
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim != 2:
        raise LabelImportError(
            f"{where}: a mask must be 2-D [H, W] (one class id per pixel), got shape {list(array.shape)}"
        )
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind not in "iu":
        raise LabelImportError(
            f"{where}: mask dtype {array.dtype} is not an integer type; save class ids as integers "
            "(e.g. np.save(path, mask.astype(np.uint8)))"
        )
    return array


def check_mask(
    mask: np.ndarray,
    *,
    shape: tuple[int, int],
    num_classes: int,
    ignore_index: int | None,
    where: str,
    item: str,
) -> str | None:
    """What is wrong with ``mask`` (an integer ``[H, W]`` array), or ``None``.

    Args:
        shape: the image's ``(height, width)``; the mask must have the same.
        num_classes: K: valid values are ``0..K-1`` ...
        ignore_index: ... and this (unlabelled pixels), if not ``None``.
        where: the mask's place; ``item`` its image, for the message.
    """
    if tuple(mask.shape) != tuple(shape):
        return (
            f"{where}: the mask is {mask.shape[0]}x{mask.shape[1]} (height x width) but image {item!r} is "
            f"{shape[0]}x{shape[1]}; a mask holds one class id per image pixel (not resized, not transposed)"
        )
    bad = (mask < 0) | (mask >= num_classes)
    if ignore_index is not None:
        bad &= mask != ignore_index
    if not bool(bad.any()):
        return None
    values = np.unique(mask[bad])
    row, col = divmod(int(np.argmax(bad)), int(mask.shape[1]))
    shown = ", ".join(str(int(v)) for v in values[:5]) + (", ..." if values.size > 5 else "")
    allowed = f"class ids 0..{num_classes - 1}"
    allowed += f" or the ignore index {ignore_index} (unlabelled pixels)" if ignore_index is not None else ""
    hint = ""
    if num_classes == 2 and set(values.tolist()) <= {255, 1} and ignore_index != 255:
        hint = "; a 0/255 binary mask? save it as 0/1"
    elif ignore_index is None and 255 in values:
        hint = (
            "; does 255 mark unlabelled pixels? set `ignore_index = 255` in [segmentation] of forgetting.toml"
        )
    elif values.size and int(values.max()) > num_classes and mask.dtype == np.uint8:
        hint = "; a mask drawn with visible grey levels or colours? store the class id itself in each pixel"
    return (
        f"{where}: value(s) {shown} in {int(bad.sum())} pixel(s), first at row {row}, column {col}, are not "
        f"{allowed}{hint}"
    )
