"""Forgetting maps for semantic segmentation: the config, the analysis and the whole pipeline.

``run_forgetting_maps(config, out_dir)`` (the ``forgetting maps`` command) does, in order:

1. load the dataset (any segmentation dataset: ``seismic-synthetic``, ``f3``, your ``arrays``);
2. build the segmenter (``unet`` or ``deconvnet``) and train it with class-weighted cross-entropy and
   ``ignore_index``, observing the training sections (and optionally the test sections) in eval mode
   after every epoch with a per-pixel :class:`~forgetting.events.EventTracker`;
3. predict both splits once more for the final softmax margins and the segmentation metrics;
4. analyse the maps (:func:`analyze_forgetting`): frequently forgotten regions and their connected
   components, per-class rates, temporal groups, and the correlation of the forgetting count with the final
   margin and with the distance to the nearest label boundary;
5. write ``maps.npz`` (every map), ``summary.json`` (every number), ``model.pt``, the trackers, and the
   static HTML report ``report/index.html`` with its PNGs.

A notebook user can call the steps on their own model and data: :func:`~forgetting.segmentation.
fit_segmentation` (or their own loop with an :class:`~forgetting.observe.ObservationCallback`),
:func:`~forgetting.segmentation.predict_segmentation`, :func:`analyze_forgetting` and
:func:`~forgetting.segmentation.write_maps_report`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._io import atomic_savez, atomic_write_text, make_directory
from forgetting._lock import directory_lock
from forgetting.callbacks import Callback
from forgetting.data.dataset import Dataset, Split
from forgetting.exceptions import ConfigError, DatasetFormatError, UnknownNameError
from forgetting.records import TrainRecord
from forgetting.segmentation.maps_analysis import MapsAnalysis, analyze_forgetting
from forgetting.segmentation.maps_config import (
    MapsConfig,
    check_segmentation_model,
    default_maps_config,
    load_maps_config,
    parse_maps_config,
)
from forgetting.segmentation.metrics import SegmentationMetrics, segmentation_metrics

__all__ = [
    "MapsAnalysis",
    "MapsConfig",
    "MapsResult",
    "analyze_forgetting",
    "check_segmentation_model",
    "default_maps_config",
    "load_maps_config",
    "parse_maps_config",
    "run_forgetting_maps",
]

logger = logging.getLogger(__name__)


@dataclass
class MapsResult:
    """What :func:`run_forgetting_maps` produced.

    Attributes:
        out_dir: the run directory.
        report: ``report/index.html``.
        arrays: ``maps.npz`` (every map; keys ``train_*`` and ``test_*``).
        summary_path: ``summary.json`` (every number).
        map_pngs: the per-section map figures, train first.
        metrics: ``{"train": ..., "test": ...}`` segmentation metrics of the final model.
        analyses: ``{"train": ...}`` and ``"test"`` when tracked.
        record: the training record.
        seconds: wall time per phase (``data``, ``train``, ``track``, ``analysis``, ``report``, ``total``).
        summary: the content of ``summary.json``.
    """

    out_dir: Path
    report: Path
    arrays: Path
    summary_path: Path
    map_pngs: list[Path]
    metrics: dict[str, SegmentationMetrics]
    analyses: dict[str, MapsAnalysis]
    record: TrainRecord
    seconds: dict[str, float]
    summary: dict[str, Any]


class _ProgressLog(Callback):
    """Logs the epoch and the elapsed time about six times per run (training is silent otherwise)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.every = max(1, epochs // 6)
        self.start = time.perf_counter()

    def on_train_begin(self, model: torch.nn.Module) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, model: torch.nn.Module, *, epoch: int, step: int) -> None:
        if epoch % self.every == 0 or epoch == self.epochs:
            logger.info("epoch %d/%d (%.0f s)", epoch, self.epochs, time.perf_counter() - self.start)


def _resolve_classes(dataset: Dataset, ignore_index: int | None) -> tuple[str, ...]:
    """The class names, with numeric default names cut back to the largest non-ignored label.

    The ``arrays`` loader names mask classes ``"0".."max"`` including a void value such as 255; those
    trailing names are dropped when ``ignore_index`` is set, so K is the real number of classes.
    """
    classes = tuple(dataset.classes)
    default_names = classes == tuple(str(i) for i in range(len(classes)))
    if ignore_index is None or not default_names:
        return classes
    hi = -1
    for split in dataset.splits.values():
        t = split.targets
        valid = t != ignore_index
        if bool(valid.any()):
            hi = max(hi, int(t[valid].max()))
    return classes[: hi + 1] if 0 <= hi < len(classes) else classes


def _check_split(dataset: Dataset, name: str, key: str) -> Split:
    if name not in dataset.splits:
        raise ConfigError(f"`{key}` = {name!r}: dataset {dataset.name!r} has splits {sorted(dataset.splits)}")
    split = dataset.splits[name]
    if split.targets.ndim != 3:
        raise ConfigError(
            f"dataset {dataset.name!r} is not a segmentation dataset (its {name!r} targets have shape "
            f"{tuple(split.targets.shape)}, masks [N, H, W] are needed); use seismic-synthetic, f3 or arrays "
            "with masks.npy"
        )
    return split


def load_segmentation_splits(config: Any, *, seed: int) -> tuple[Dataset, Split, Split, tuple[str, ...]]:
    """Load ``config.dataset`` and its train/test splits for the maps and augmentation pipelines.

    ``config`` has ``dataset``, ``ignore_index`` and ``data`` (``root``, ``options``, ``train_split``,
    ``test_split``). Returns the dataset, the two splits (uint8 ``[N, C, H, W]`` images, int64 ``[N, H, W]``
    masks) and the class names (a void class equal to ``ignore_index`` dropped).

    Raises:
        ConfigError: bad ``data.options`` or split names.
        DatasetFormatError: a mask value that is neither a class id nor ``ignore_index``.
    """
    from forgetting.data import load_dataset

    try:
        dataset = load_dataset(config.dataset, root=config.data.root, seed=seed, **config.data.options)
    except UnknownNameError:
        raise
    except ConfigError as exc:
        raise ConfigError(f"`data.options` for dataset {config.dataset!r}: {exc}") from None
    train = _check_split(dataset, config.data.train_split, "data.train_split")
    test = _check_split(dataset, config.data.test_split, "data.test_split")
    ignore = config.ignore_index
    classes = _resolve_classes(dataset, ignore)
    k = len(classes)
    for key, split in (("data.train_split", train), ("data.test_split", test)):
        labels = split.targets
        bad = (labels < 0) | (labels >= k)
        if ignore is not None:
            bad &= labels != ignore
        if bool(bad.any()):
            values = torch.unique(labels[bad])[:10].tolist()
            raise DatasetFormatError(
                f"`{key}`: masks of dataset {dataset.name!r} hold {values}, outside the class ids 0..{k - 1} "
                f"of classes {list(classes)}; set `ignore_index` to the void/padding label "
                f"(currently {ignore!r}) or pass the class names"
            )
    return dataset, train, test, classes


def run_forgetting_maps(config: MapsConfig | None = None, out_dir: str | Path = "runs/maps") -> MapsResult:
    """Train a segmenter while tracking per-pixel forgetting, analyse the maps and write the report.

    Args:
        config: the run's settings; default :func:`default_maps_config`.
        out_dir: the run directory (created; files in it are overwritten).

    Returns:
        A :class:`MapsResult` with the paths written and every number.

    Raises:
        ConfigError: ``out_dir`` is not a writable directory (checked before anything runs).
        DirectoryInUseError: another process runs into ``out_dir`` (one run per directory).
    """
    out = make_directory(out_dir, what="run directory", hint="pass another --out")
    with directory_lock(out, what="a forgetting-maps run"):
        return _run_forgetting_maps(config, out)


def _run_forgetting_maps(config: MapsConfig | None, out: Path) -> MapsResult:
    from forgetting.devices import resolve_device
    from forgetting.models import build_from_ref
    from forgetting.performance import place_model
    from forgetting.segmentation.report import write_maps_report
    from forgetting.segmentation.training import (
        fit_segmentation,
        predict_segmentation,
        segmentation_train_config,
    )

    config = config or default_maps_config()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(config.device)

    tick = time.perf_counter()
    dataset, train, test, classes = load_segmentation_splits(
        config, seed=config.seed if config.data.seed is None else config.data.seed
    )
    ignore = config.ignore_index
    k = len(classes)
    seconds["data"] = time.perf_counter() - tick
    logger.info(
        "maps: %s train %s, test %s, %d classes, device %s",
        dataset.name,
        tuple(train.images.shape),
        tuple(test.images.shape),
        k,
        device,
    )

    model = build_from_ref(
        config.model, dataset.in_channels, k, seed=config.seed, options=config.model_options
    )
    model = place_model(model, device)
    train_config = segmentation_train_config(
        config.train.epochs,
        lr=config.train.lr,
        batch_size=config.train.batch_size,
        optimizer=config.train.optimizer,
        weight_decay=config.train.weight_decay,
        schedule=config.train.schedule,
        flip=config.train.flip,
    )
    fitted = fit_segmentation(
        model,
        train,
        num_classes=k,
        config=train_config,
        class_weights=config.train.class_weights,
        ignore_index=ignore,
        seed=config.seed,
        observe={"test": test} if config.track.test else None,
        every=config.track.every,
        eval_batch_size=config.track.batch_size,
        callbacks=[_ProgressLog(config.train.epochs)],
    )
    seconds["train"] = fitted.record.seconds
    seconds["track"] = fitted.record.track_seconds
    logger.info(
        "trained %d epochs in %.1f s (+ %.1f s tracking)",
        fitted.record.epochs,
        fitted.record.seconds,
        fitted.record.track_seconds,
    )

    tick = time.perf_counter()
    bs = config.track.batch_size
    splits = {"train": train, "test": test}
    metrics: dict[str, SegmentationMetrics] = {}
    analyses: dict[str, MapsAnalysis] = {}
    for name, split in splits.items():
        pred, margin = predict_segmentation(model, split.images, batch_size=bs)  # one final eval pass
        metrics[name] = segmentation_metrics(pred, split.targets.to(pred.device), k, ignore)
        if name not in fitted.trackers:
            continue
        analyses[name] = analyze_forgetting(
            fitted.trackers[name].tracker,
            split.targets,
            class_names=classes,
            ignore_index=ignore,
            margin_N_H_W=margin,
            epochs=fitted.record.epochs,
            tau=config.maps.tau,
            connectivity=config.maps.connectivity,
            min_region_area=config.maps.min_region_area,
            early_fraction=config.maps.early_fraction,
            max_correlation_points=config.maps.max_correlation_points,
            seed=config.seed,
        )
    seconds["analysis"] = time.perf_counter() - tick

    tick = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, analysis in analyses.items():
        arrays |= analysis.arrays(f"{name}_")
    for name, m in metrics.items():
        arrays[f"{name}_confusion"] = m.confusion
    arrays_path = atomic_savez(out / "maps.npz", arrays)
    for name, observer in fitted.trackers.items():
        observer.tracker.save(out / f"tracker-{name}.npz")
    torch.save(model.state_dict(), out / "model.pt")
    section_names = dataset.meta.get("section_names")
    names_by_split = {
        name: list(section_names[split_name])
        if isinstance(section_names, dict) and split_name in section_names
        else [f"section {i}" for i in range(len(splits[name]))]
        for name, split_name in (("train", config.data.train_split), ("test", config.data.test_split))
    }
    seconds["save"] = time.perf_counter() - tick

    tick = time.perf_counter()
    summary: dict[str, Any] = {
        "name": config.name,
        "dataset": dataset.name,
        "model": config.model,
        "model_options": dict(config.model_options),
        "device": str(device),
        "classes": list(classes),
        "ignore_index": ignore,
        "train_sections": len(train),
        "test_sections": len(test),
        "section_shape": list(train.images.shape[-2:]),
        "epochs": fitted.record.epochs,
        "tau": config.maps.tau,
        "min_region_area": config.maps.min_region_area,
        "class_weights": [round(float(w), 4) for w in fitted.class_weights.tolist()],
        "metrics": {name: m.to_dict(classes) for name, m in metrics.items()},
        "maps": {name: a.summary() for name, a in analyses.items()},
    }
    report = write_maps_report(
        out,
        analyses,
        metrics=metrics,
        images={name: splits[name].images for name in analyses},
        section_names=names_by_split,
        sections=config.maps.sections,
        title=f"forgetting maps: {config.name}",
        config_json=config.model_dump(mode="json"),
        summary=summary,
    )
    seconds["report"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - start
    summary["seconds"] = {k2: round(v, 2) for k2, v in seconds.items()}
    summary["map_pngs"] = [str(p.relative_to(out)) for p in report.map_pngs]
    summary_path = out / "summary.json"
    atomic_write_text(summary_path, json.dumps(summary, indent=2, allow_nan=False))
    logger.info("maps written to %s in %.1f s", out, seconds["total"])
    return MapsResult(
        out_dir=out,
        report=report.index,
        arrays=arrays_path,
        summary_path=summary_path,
        map_pngs=report.map_pngs,
        metrics=metrics,
        analyses=analyses,
        record=fitted.record,
        seconds=seconds,
        summary=summary,
    )
