"""The records of a labelling project: ledger entries, import summaries, status; and the message helpers the
project and its kinds of labels share. No file access here."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImportSummary", "LabelEntry", "ProjectStatus", "bullets", "digest", "now"]

_SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class LabelEntry:
    """One labelled item in the ledger (see :mod:`forgetting.annotate.project`).

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
        media_root: the directory of the images Label Studio shows (a local storage there).
        label_studio_document_root: Label Studio's local-files document root for the project's image URLs.
        task: ``classification`` or ``segmentation``.
        pixel_counts: segmentation: class name -> labelled pixels, over the labelled images.
        ignored_pixels: segmentation: pixels of the labelled images with the ignore index.
        new_labels: labels imported since the latest query (the next round trains on them first).
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
    label_studio_document_root: Path | None = None
    task: str = "classification"
    pixel_counts: dict[str, int] = field(default_factory=dict)
    ignored_pixels: int = 0
    new_labels: int = 0


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def bullets(lines: Sequence[str]) -> str:
    """The first lines of ``lines`` as an indented list (each on its own line), plus how many more there
    are."""
    more = len(lines) - _SHOWN_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return "\n  - " + "\n  - ".join(lines[:_SHOWN_PROBLEMS]) + tail


def digest(obj: Any) -> str:
    """A short stable digest (16 hex digits of SHA-256) of a JSON-serialisable object."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
