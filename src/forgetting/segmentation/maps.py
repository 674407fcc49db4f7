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
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from forgetting._config import read_config_file, validate_toml
from forgetting._io import atomic_savez
from forgetting.callbacks import Callback
from forgetting.data.dataset import Dataset, Split
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError, DatasetFormatError, UnknownNameError
from forgetting.records import TrainRecord
from forgetting.segmentation.metrics import SegmentationMetrics, segmentation_metrics
from forgetting.segmentation.regions import (
    Correlation,
    RegionStats,
    TemporalGroups,
    boundary_distance,
    connected_regions,
    frequently_forgotten,
    per_class_forgetting,
    spearman,
    spearman_by_class,
    temporal_groups,
    within_class_rho,
)

__all__ = [
    "MapsAnalysis",
    "MapsConfig",
    "MapsResult",
    "analyze_forgetting",
    "default_maps_config",
    "load_maps_config",
    "parse_maps_config",
    "run_forgetting_maps",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------
# Config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(ge=1)]


class MapsData(_Strict):
    """Section ``[data]``: where the sections come from.

    ``root``: the folder (or ``.npz``) of a user-supplied dataset (``f3``, ``arrays``); ``options``: the
    dataset's options (``forgetting datasets``); ``train_split`` / ``test_split``: the split names;
    ``seed``: the dataset's seed (default: the run's ``seed``).
    """

    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    seed: int | None = None


class MapsTrain(_Strict):
    """Section ``[train]``: how the segmenter is trained (a fixed number of epochs)."""

    epochs: PositiveInt = 24
    lr: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: PositiveInt = 8
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    schedule: Literal["constant", "plateau", "cosine"] = "constant"
    flip: bool = True
    class_weights: Literal["median", "balanced", "sqrt", "none"] | list[Annotated[float, Field(ge=0)]] = (
        "median"
    )


class MapsTrack(_Strict):
    """Section ``[track]``: the per-pixel observation passes."""

    every: PositiveInt = 1
    test: bool = True
    batch_size: PositiveInt = 16


class MapsAnalysisSettings(_Strict):
    """Section ``[maps]``: region statistics, temporal groups, correlations and the map PNGs."""

    tau: PositiveInt = 2
    connectivity: Literal[1, 2] = 2
    min_region_area: PositiveInt = 4
    early_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    sections: PositiveInt | list[Annotated[int, Field(ge=0)]] = 3
    max_correlation_points: PositiveInt = 200_000


class MapsConfig(_Strict):
    """A ``forgetting maps`` config (TOML). Every key is optional; unknown keys are errors.

    Top level: ``name``, ``seed``, ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``), ``dataset``
    (a segmentation dataset name), ``model`` (``unet`` or ``deconvnet``), ``model_options``, ``ignore_index``
    (mask value that counts nothing; padding of the seismic datasets is 255). Sections: ``[data]``
    (:class:`MapsData`), ``[train]`` (:class:`MapsTrain`), ``[track]`` (:class:`MapsTrack`), ``[maps]``
    (:class:`MapsAnalysisSettings`).
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = "maps-seismic"
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"
    dataset: str = "seismic-synthetic"
    model: str = "unet"
    model_options: dict[str, Any] = Field(default_factory=lambda: {"base": 8, "depth": 3})
    ignore_index: int | None = 255
    data: MapsData = Field(default_factory=MapsData)
    train: MapsTrain = Field(default_factory=MapsTrain)
    track: MapsTrack = Field(default_factory=MapsTrack)
    maps: MapsAnalysisSettings = Field(default_factory=MapsAnalysisSettings)


def parse_maps_config(
    text: str | Mapping[str, Any], *, source: str = "<maps config>", validate_names: bool = True
) -> MapsConfig:
    """Validate TOML text (or a parsed mapping) into a :class:`MapsConfig`.

    With ``validate_names`` the dataset must be registered, the model a segmentation model, and
    ``model_options`` valid for it.

    Raises:
        ConfigError: naming the key path, the bad value and the allowed keys or values.
    """
    config = validate_toml(MapsConfig, text, source=source, what="maps config")
    if validate_names:
        _validate_names(config, source)
    return config


def check_segmentation_model(model: str, options: dict[str, Any], source: str) -> None:
    """Check a segmentation model reference of a config: a registered segmentation model (or a user model
    registered without a task) with valid options, or an import path ``"pkg.mod:fn"`` that imports.

    Raises:
        UnknownNameError / ConfigError: naming the key, the bad value and the allowed ones.
    """
    from forgetting.models import get_spec, is_import_path, list_models, validate_model_ref

    if not is_import_path(model):
        try:
            spec = get_spec(model)
        except UnknownNameError:
            spec = None
        if spec is None or spec.task not in (None, "segmentation"):
            raise UnknownNameError(
                f"{source}: `model` = {model!r} is not a segmentation model; choose one of "
                f"{', '.join(list_models('segmentation'))}, or the import path of your own ('pkg.mod:fn')"
            )
    try:
        validate_model_ref(model, options)
    except ConfigError as exc:
        raise ConfigError(f"{source}: `model` / `model_options`: {exc}") from None


def _validate_names(config: MapsConfig, source: str) -> None:
    from forgetting.data import list_datasets

    if config.dataset not in list_datasets():
        raise UnknownNameError(
            f"{source}: `dataset` = {config.dataset!r} is not a known dataset; known: "
            f"{', '.join(list_datasets())}"
        )
    check_segmentation_model(config.model, config.model_options, source)
    if config.data.train_split == config.data.test_split:
        raise ConfigError(
            f"{source}: `data.train_split` and `data.test_split` are both {config.data.train_split!r}; "
            "test on a different split"
        )


def load_maps_config(path: str | Path, *, validate_names: bool = True) -> MapsConfig:
    """Read and validate a ``forgetting maps`` TOML config file (see :class:`MapsConfig`)."""
    return parse_maps_config(read_config_file(path), source=str(path), validate_names=validate_names)


def default_maps_config() -> MapsConfig:
    """The packaged default config (``forgetting/segmentation/maps_default.toml``): synthetic seismic."""
    text = resources.files("forgetting.segmentation").joinpath("maps_default.toml").read_text("utf-8")
    return parse_maps_config(text, source="<built-in maps_default.toml>")


# --------------------------------------------------------------------------------------------------------
# Analysis


@dataclass
class MapsAnalysis:
    """The forgetting maps of one set of sections and everything measured on them.

    Maps are numpy ``[N, H, W]``: ``forgetting``, ``switches`` (int32), ``learned_epoch``,
    ``last_forgotten_epoch`` (int64, -1 when undefined), ``never_learned``, ``valid``, ``frequent``
    (bool), ``masks`` (int64 true labels), ``distance`` (float32 distance to the nearest other class; NaN
    on ignored pixels, inf in a one-class section), ``margin`` (float32 final top-1 minus top-2 softmax
    probability, or None).

    Attributes:
        regions: connected components of ``frequent``.
        per_class: :func:`~forgetting.segmentation.regions.per_class_forgetting` plus ``regions`` and
            ``region_area`` (int64 ``[K]``, by majority class).
        temporal: when pixels were forgotten.
        margin_correlation: Spearman's rho of forgetting vs final margin over all valid pixels (None without
            margins).
        distance_correlation: Spearman's rho of forgetting vs distance to the nearest label boundary.
        margin_correlation_by_class, distance_correlation_by_class: the same within each true class (K
            entries). The pooled rho mixes classes that differ in both quantities; the within-class rho
            (:func:`~forgetting.segmentation.regions.within_class_rho`) does not.
    """

    class_names: tuple[str, ...]
    tau: int
    epochs: int
    forgetting: np.ndarray = field(repr=False)
    switches: np.ndarray = field(repr=False)
    learned_epoch: np.ndarray = field(repr=False)
    last_forgotten_epoch: np.ndarray = field(repr=False)
    never_learned: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    frequent: np.ndarray = field(repr=False)
    distance: np.ndarray = field(repr=False)
    margin: np.ndarray | None = field(repr=False)
    regions: RegionStats
    per_class: dict[str, np.ndarray] = field(repr=False)
    temporal: TemporalGroups
    margin_correlation: Correlation | None
    distance_correlation: Correlation
    margin_correlation_by_class: list[Correlation] | None = field(default=None, repr=False)
    distance_correlation_by_class: list[Correlation] = field(default_factory=list, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def valid_pixels(self) -> int:
        return int(self.valid.sum())

    def summary(self) -> dict[str, Any]:
        """Every number, JSON-friendly (NaN as None)."""
        valid = self.valid_pixels
        forgotten = int((self.forgetting[self.valid] > 0).sum())
        per_class = {
            name: {key: _clean(values[i]) for key, values in self.per_class.items()}
            for i, name in enumerate(self.class_names)
        }
        return {
            "sections": int(self.forgetting.shape[0]),
            "valid_pixels": valid,
            "epochs": self.epochs,
            "tau": self.tau,
            "fraction_forgotten": forgotten / valid if valid else None,
            "fraction_frequent": int(self.frequent.sum()) / valid if valid else None,
            "fraction_never_learned": int(self.never_learned[self.valid].sum()) / valid if valid else None,
            "mean_forgetting": float(self.forgetting[self.valid].mean()) if valid else None,
            "mean_switches": float(self.switches[self.valid].mean()) if valid else None,
            "regions": {k: _clean(v) for k, v in self.regions.summary().items()},
            "per_class": per_class,
            "temporal": {
                "early_until_epoch": self.temporal.early_until,
                "pixels": dict(
                    zip(self.temporal.fractions(), (int(c) for c in self.temporal.counts), strict=True)
                ),
                "fractions": {k: _clean(v) for k, v in self.temporal.fractions().items()},
            },
            "correlation_forgetting_margin": self._correlation_summary(
                self.margin_correlation, self.margin_correlation_by_class
            ),
            "correlation_forgetting_distance": self._correlation_summary(
                self.distance_correlation, self.distance_correlation_by_class
            ),
        }

    def _correlation_summary(
        self, pooled: Correlation | None, by_class: list[Correlation] | None
    ) -> dict[str, Any] | None:
        if pooled is None:
            return None
        out: dict[str, Any] = pooled.to_dict()
        if by_class:
            out["within_class_rho"] = _clean(within_class_rho(by_class))
            out["by_class"] = {
                name: _clean(c.rho) for name, c in zip(self.class_names, by_class, strict=True)
            }
        return out

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The maps in compact dtypes, for ``np.savez`` (keys prefixed by ``prefix``)."""
        out = {
            "forgetting": self.forgetting.astype(np.int16),
            "switches": self.switches.astype(np.int16),
            "learned_epoch": self.learned_epoch.astype(np.int16),
            "last_forgotten_epoch": self.last_forgotten_epoch.astype(np.int16),
            "never_learned": self.never_learned,
            "masks": self.masks.astype(np.int16),
            "frequent": self.frequent,
            "regions": self.regions.labels,
            "temporal_group": self.temporal.group,
            "boundary_distance": self.distance,
        }
        if self.margin is not None:
            out["margin"] = self.margin
        return {f"{prefix}{k}": v for k, v in out.items()}


def _clean(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def analyze_forgetting(
    tracker: EventTracker,
    masks_N_H_W: torch.Tensor | np.ndarray,
    *,
    class_names: Sequence[str],
    ignore_index: int | None = None,
    margin_N_H_W: torch.Tensor | np.ndarray | None = None,
    epochs: int | None = None,
    tau: int = 2,
    connectivity: int = 2,
    min_region_area: int = 4,
    early_fraction: float = 0.5,
    max_correlation_points: int | None = 200_000,
    seed: int = 0,
) -> MapsAnalysis:
    """Analyse a per-pixel tracker: regions, per-class rates, temporal groups and correlations.

    Args:
        tracker: an :class:`EventTracker` of shape ``(N, H, W)`` fed with the sections' masks.
        masks_N_H_W: int64 true labels of the tracked sections.
        class_names: K names; labels must lie in ``0..K-1`` apart from ``ignore_index``.
        ignore_index: label value that is not a pixel to analyse.
        margin_N_H_W: optional float final softmax margins (:func:`~forgetting.segmentation.
            predict_segmentation`).
        epochs: epochs trained; default the largest epoch the tracker saw.
        tau: frequently forgotten = forgotten at least ``tau`` times.
        connectivity, min_region_area: see :func:`~forgetting.segmentation.regions.connected_regions`.
        early_fraction: see :func:`~forgetting.segmentation.regions.temporal_groups`.
        max_correlation_points, seed: the seeded subsample of the Spearman correlations.
    """
    if len(tracker.shape) != 3:
        raise ConfigError(f"analyze_forgetting needs a per-pixel tracker (N, H, W), got {tracker.shape}")
    masks = masks_N_H_W.cpu().numpy() if isinstance(masks_N_H_W, torch.Tensor) else np.asarray(masks_N_H_W)
    if masks.shape != tracker.shape:
        raise ConfigError(f"masks {masks.shape} must have the tracker's shape {tracker.shape}")
    k = len(class_names)
    valid = masks != ignore_index if ignore_index is not None else np.ones(masks.shape, dtype=bool)
    bad = valid & ((masks < 0) | (masks >= k))
    if bad.any():
        raise DatasetFormatError(
            f"mask values {np.unique(masks[bad])[:10].tolist()} are outside 0..{k - 1} and not the "
            f"ignore_index {ignore_index}; pass the dataset's class names or set ignore_index"
        )
    read = tracker.to_numpy(
        ["forgetting", "switches", "learned_epoch", "last_forgotten_epoch", "never_learned", "seen"]
    )
    valid &= read["seen"]
    epochs_seen = tracker.epochs_seen
    if epochs is None:
        epochs = max(epochs_seen) if epochs_seen else 1
    forgetting = read["forgetting"]
    frequent = frequently_forgotten(forgetting, tau, valid)
    regions = connected_regions(
        frequent, masks_N_H_W=masks, num_classes=k, connectivity=connectivity, min_area=min_region_area
    )
    per_class = per_class_forgetting(
        forgetting, masks, k, tau=tau, ignore_index=ignore_index, never_learned_N_H_W=read["never_learned"]
    )
    rc = regions.per_class()
    per_class["regions"] = rc["count"]
    per_class["region_area"] = rc["area"]
    temporal = temporal_groups(
        forgetting,
        read["last_forgotten_epoch"],
        read["learned_epoch"],
        read["never_learned"],
        epochs=int(epochs),
        early_fraction=early_fraction,
        valid_N_H_W=valid,
    )
    distance = boundary_distance(masks, ignore_index)
    margin = None
    margin_corr = None
    margin_by_class = None
    if margin_N_H_W is not None:
        margin = (
            margin_N_H_W.float().cpu().numpy()
            if isinstance(margin_N_H_W, torch.Tensor)
            else np.asarray(margin_N_H_W, dtype=np.float32)
        )
        if margin.shape != masks.shape:
            raise ConfigError(f"margins {margin.shape} must have the tracker's shape {masks.shape}")
        margin_corr = spearman(forgetting, margin, valid, max_points=max_correlation_points, seed=seed)
        margin_by_class = spearman_by_class(
            forgetting, margin, masks, k, valid, max_points=max_correlation_points, seed=seed
        )
    distance_corr = spearman(forgetting, distance, valid, max_points=max_correlation_points, seed=seed)
    distance_by_class = spearman_by_class(
        forgetting, distance, masks, k, valid, max_points=max_correlation_points, seed=seed
    )
    return MapsAnalysis(
        class_names=tuple(class_names),
        tau=int(tau),
        epochs=int(epochs),
        forgetting=forgetting,
        switches=read["switches"],
        learned_epoch=read["learned_epoch"],
        last_forgotten_epoch=read["last_forgotten_epoch"],
        never_learned=read["never_learned"],
        masks=masks,
        valid=valid,
        frequent=frequent,
        distance=distance,
        margin=margin,
        regions=regions,
        per_class=per_class,
        temporal=temporal,
        margin_correlation=margin_corr,
        distance_correlation=distance_corr,
        margin_correlation_by_class=margin_by_class,
        distance_correlation_by_class=distance_by_class,
    )


# --------------------------------------------------------------------------------------------------------
# Pipeline


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
    """
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
    out = Path(out_dir)
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
    tmp = out / f".summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, summary_path)
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
