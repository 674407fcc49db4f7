"""A labelling project: a directory that holds the settings, the labels so far and every query's output.

Layout::

    <project>/
      forgetting.toml            settings: image source, classes, model, strategy, training (editable)
      labels.jsonl               the label ledger: one JSON object per labelled item
      label_studio_config.xml    a Label Studio labelling interface for the classes
      media/                     PNGs of array rows, shown to annotators (array sources only)
      rounds/<k>/                query k: query.csv, label_studio.json, index.html, query.json
                                 (+ dynamics.npz with the pool's switch counts when it was tracked)

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

Segmentation (not yet supported) will add ``task = "segmentation"``, a ``masks`` source next to
``images`` and a ``mask`` field (a path under ``<project>/masks/``) in the ledger instead of ``label``;
nothing else in this layout changes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from forgetting._io import atomic_savez, atomic_write_text
from forgetting.annotate.exporters import (
    label_studio_config,
    label_studio_tasks,
    write_html,
    write_json,
    write_png,
    write_ranked_csv,
)
from forgetting.annotate.importers import LabelFormat, LabelRow, read_label_file
from forgetting.annotate.results import QueryResult, RankedItem
from forgetting.annotate.session import known_strategies, rank_pool
from forgetting.annotate.settings import (
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
    LabelConflictError,
    LabelImportError,
    ProjectError,
    UnknownNameError,
)
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
_SHOWN_PROBLEMS = 10


# --------------------------------------------------------------------------------------------------------
# Ledger and summaries


@dataclass(frozen=True)
class LabelEntry:
    """One labelled item in the ledger (see the module docstring)."""

    item: str
    label: str
    source: str
    round: int
    imported_at: str


@dataclass(frozen=True)
class ImportSummary:
    """What an import changed.

    Attributes:
        added: items labelled for the first time.
        unchanged: items that already had the same label (re-imports are no-ops).
        overwritten: items whose label was replaced (only with ``overwrite``).
        skipped: rows or tasks without a label.
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
        class_counts: class name -> labelled images.
        rounds: number of queries made (rounds ``0..rounds-1`` are on disk).
        pending: items of the latest query that have no label yet.
        missing: labelled item ids that are no longer in the source (ignored when training).
        media_root: the directory Label Studio must serve the images from (its local-files document root).
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
    model: str = "small-cnn",
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
            Omitted, classes are added as imported labels name them.
        model: a classification model from :func:`forgetting.list_models`; ``model_options`` its options.
        strategy: the default query strategy; ``query_size`` the default number of images per query.
        train: training settings (keys of :class:`~forgetting.training.TrainConfig`, or one).
        track: tracking settings (keys of :class:`~forgetting.loop.TrackConfig`, or one).
        image_key: the array name in an ``.npz`` (default ``images``, or its only array).
        size: ``(height, width)`` to resize folder images to (needed when their sizes differ).
        device: ``cpu``, ``cuda``, ... (default: the best available).
        labels: a CSV or Label Studio export of the labels known so far, imported right away.

    Raises:
        ProjectError: ``root`` already holds a project, or a setting is invalid.
        DatasetNotFoundError: ``images`` does not exist.
    """
    from forgetting.models import build_model, model_info

    root = Path(root).expanduser().resolve()
    if (root / MANIFEST_FILE).exists():
        raise ProjectError(
            f"{root} already holds a labelling project ({MANIFEST_FILE}); open it with "
            "LabelingProject.open(...) or run `forgetting query` on it, or pick another directory"
        )
    source = ImageSource.from_path(images, key=image_key, size=size)
    ids = source.item_ids()
    if isinstance(classes, str):
        classes = [c for c in (p.strip() for p in classes.split(",")) if c]
    info = model_info(model)
    if info.get("task") != "classification":
        raise ProjectError(
            f"model {model!r} is a {info.get('task')} model; a labelling project needs a classifier"
        )
    build_model(model, 1, 2, seed=0, **dict(model_options or {}))  # checks the options now, not at a query
    raw: dict[str, Any] = {
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
    settings = validate_settings(raw, source="init_project")
    if strategy.strip().lower().replace("_", "-") not in known_strategies():
        raise UnknownNameError(
            f"unknown strategy {strategy!r}; known strategies: {', '.join(known_strategies())}"
        )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / LEDGER_FILE, "")
    atomic_write_text(root / MANIFEST_FILE, dump_settings(settings))
    project = LabelingProject(root, settings)
    project._write_label_studio_config()
    if labels is not None:
        try:
            project.import_labels(labels)
        except BaseException:  # leave no half-made project behind: the user fixes the file and retries
            for name in (MANIFEST_FILE, LEDGER_FILE, LABEL_STUDIO_CONFIG_FILE, ".lock"):
                (root / name).unlink(missing_ok=True)
            raise
    logger.debug("labelling project created in %s for %d images in %s", root, len(ids), source.path)
    return project


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
        """An exclusive lock on the project for the duration of an import or a query (POSIX only)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            yield
            return
        with (self.root / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ProjectError(
                    f"{self.root} is in use by another forgetting process (an import or query); wait for it"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _reload(self) -> None:
        self.settings = load_settings(self.root / MANIFEST_FILE)

    def _save_settings(self) -> None:
        atomic_write_text(self.root / MANIFEST_FILE, dump_settings(self.settings))

    def _write_label_studio_config(self) -> None:
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
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = LabelEntry(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ProjectError(
                    f"{path} line {line_no} is corrupt ({exc}); restore it from a backup or remove the line"
                ) from None
            entries[entry.item] = entry
        return entries

    def _write_ledger(self, entries: Mapping[str, LabelEntry]) -> None:
        text = "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries.values())
        atomic_write_text(self.root / LEDGER_FILE, text)

    def import_labels(
        self, path: str | Path, *, overwrite: bool = False, fmt: LabelFormat = "auto"
    ) -> ImportSummary:
        """Add the labels of a CSV (``item,label``) or a Label Studio JSON export to the project.

        All or nothing: if any row is bad, nothing is imported. Importing the same labels again is a no-op.

        Args:
            path: the file. The ranked ``query.csv`` of a round with its ``label`` column filled in works.
            overwrite: replace the labels of items that already have a different one.
            fmt: ``auto`` (by suffix), ``csv`` or ``label-studio``.

        Raises:
            LabelImportError: the file is malformed, names an unknown image, or (with fixed classes) an
                unknown class. The message names the rows.
            LabelConflictError: a label contradicts the project's (without ``overwrite``) or another row of
                the file. The message lists item, old and new label, and how to resolve it.
        """
        parsed = read_label_file(path, fmt=fmt)
        return self._apply(parsed.rows, source=Path(path).name, overwrite=overwrite, skipped=parsed.skipped)

    def add_labels(
        self, labels: Mapping[str, str], *, overwrite: bool = False, source: str = "python"
    ) -> ImportSummary:
        """Add ``{item id: class name}`` labels from Python, with the same rules as :meth:`import_labels`."""
        rows = [LabelRow(str(k), str(v), f"{source}[{k!r}]") for k, v in labels.items()]
        return self._apply(rows, source=source, overwrite=overwrite, skipped=0)

    def _apply(
        self, rows: Sequence[LabelRow], *, source: str, overwrite: bool, skipped: int
    ) -> ImportSummary:
        with self._lock():
            self._reload()
            index = self._item_index()
            incoming: dict[str, tuple[str, str]] = {}  # item -> (label, where)
            unknown: list[LabelRow] = []
            clashes: list[str] = []
            for row in rows:
                item = index.resolve(row.ref)
                if item is None:
                    unknown.append(row)
                    continue
                label = row.label.strip()
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
                    f"{source} gives different labels to the same image:\n  - "
                    + "\n  - ".join(clashes[:_SHOWN_PROBLEMS])
                    + _more(len(clashes))
                    + "\nKeep one row per image (or matching labels) and import again; nothing was imported"
                )
            classes = list(self.settings.classes)
            new_classes = sorted({label for label, _ in incoming.values()} - set(classes))
            if new_classes and self.settings.fixed_classes:
                bad = [f"{where}: {label!r}" for label, where in incoming.values() if label in new_classes]
                raise LabelImportError(
                    f"{source}: {len(bad)} label(s) are not among the project's classes {classes}:\n  - "
                    + "\n  - ".join(bad[:_SHOWN_PROBLEMS])
                    + _more(len(bad))
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
                    f"{len(conflicts)} label(s) in {source} contradict the project's labels:\n  - "
                    + "\n  - ".join(lines[:_SHOWN_PROBLEMS])
                    + _more(len(lines))
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
            f"{source}: {len(unknown)} label(s) name images that are not in the project:\n  - "
            + "\n  - ".join(lines[:_SHOWN_PROBLEMS])
            + _more(len(lines))
            + f"\n{hint}; nothing was imported"
        )

    # ------------------------------------------------------------------------------------------ rounds

    def _rounds_dir(self) -> Path:
        return self.root / ROUNDS_DIR

    def _round_meta(self, k: int) -> dict[str, Any] | None:
        path = self._rounds_dir() / str(k) / "query.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
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

        Returns:
            A :class:`QueryResult`; its files are ``query.csv``, ``label_studio.json`` and ``index.html``.

        Raises:
            ProjectError: the strategy needs labels and there are none (the message says how to start).
            PoolExhaustedError: every image is labelled.
        """
        with self._lock():
            self._reload()
            settings = self.settings
            name = (strategy or settings.strategy).strip().lower().replace("_", "-")
            if name not in known_strategies():
                raise UnknownNameError(
                    f"unknown strategy {strategy or settings.strategy!r}; "
                    f"known strategies: {', '.join(known_strategies())}"
                )
            options = dict(
                strategy_options if strategy_options is not None else settings.strategy_options.get(name, {})
            )
            n = int(n if n is not None else settings.query_size)
            if n < 1:
                raise ConfigError(f"n must be >= 1, got {n}")
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
            present = sorted((row_of[i], e.label) for i, e in ledger.items() if i in row_of)
            class_id = {c: k for k, c in enumerate(settings.classes)}
            orphans = sorted({lab for _, lab in present} - set(class_id))
            if orphans:
                raise ProjectError(
                    f"labels {orphans} in {self.root / LEDGER_FILE} are not among the classes "
                    f"{settings.classes} of {self.root / MANIFEST_FILE}; add them back to `classes`"
                )
            labeled = np.array([r for r, _ in present], dtype=np.int64)
            labels = np.array([class_id[lab] for _, lab in present], dtype=np.int64)
            digest = _digest({"labels": [[ids[r], lab] for r, lab in present], "classes": settings.classes})
            key = {
                "strategy": name,
                "strategy_options": options,
                "seed": int(seed),
                "n": n,
                "labels": digest,
                "settings": _digest(settings.model_dump(mode="json", exclude={"label_studio_url_prefix"})),
                "images": _digest({"ids": ids, "shape": list(images.shape)}),
            }
            done = self._round_count()
            last = self._round_meta(done - 1) if done else None
            rnd = done - 1 if last is not None and last.get("key", {}).get("labels") == digest else done
            if rnd == done - 1 and last is not None and last.get("key") == key and not force:
                logger.info("round %d with these labels and settings is on disk; returning it", rnd)
                return _result_from_meta(last, self._rounds_dir() / str(rnd), reused=True)
            config = settings.loop_config(name, options, int(seed))
            ranking = rank_pool(images, labeled, labels, max(len(settings.classes), 1), config, n, rnd)
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
            directory = self._write_round(rnd, meta, items, chosen_images, ids, ranking.dynamics)
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
    ) -> Path:
        """Write round ``rnd``'s files into a fresh directory, then swap it in (query.json last)."""
        source = self.source
        rounds = self._rounds_dir()
        rounds.mkdir(parents=True, exist_ok=True)
        final = rounds / str(rnd)
        staging = rounds / f".{rnd}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
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
        if dynamics:
            pool_ids = np.array([ids[int(i)] for i in dynamics["pool"]], dtype=str)
            atomic_savez(staging / "dynamics.npz", {"switches": dynamics["switches"], "items": pool_ids})
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

    # ------------------------------------------------------------------------------------------ status

    def status(self) -> ProjectStatus:
        """Counts of images, labels per class, rounds, and the latest query's unlabelled items."""
        self._reload()
        source = self.source
        ids = source.item_ids()
        present = set(ids)
        ledger = self.labels()
        counts = {c: 0 for c in self.settings.classes}
        for item, entry in ledger.items():
            if item in present:
                counts[entry.label] = counts.get(entry.label, 0) + 1
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
            n_labeled=sum(counts.values()),
            class_counts=counts,
            rounds=rounds,
            pending=pending,
            missing=sorted(set(ledger) - present),
            media_root=self.media_root,
        )


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
    )
