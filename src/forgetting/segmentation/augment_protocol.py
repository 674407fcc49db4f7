"""The forgetting-guided augmentation protocol (``forgetting augment``): does restyling the frequently
forgotten regions help?

Per seed, four arms trained from the same initial weights, with the same batch-order seed and the identical
budget:

* ``baseline``: the training sections, no augmentation; its per-pixel forgetting maps drive the rest;
* ``standard``: the standard augmentation at training time: a random rotation by ``standard_rotation``
  degrees (10 by default, either sign) with probability 0.5, as the ``RandomRotate(10)`` of the authors'
  lab code (olivesgatech/RoSE), then a random left-right flip (``standard_flips``: ``"lr"`` by default,
  ``"none"`` for the rotation alone, ``"lr+ud"`` adds up-down flips, which turn a seismic section upside
  down);
* ``ours``: the training sections plus ``copies`` stylised copies of every section holding a selected
  region (:func:`~forgetting.segmentation.augment.select_regions` on the baseline's training map, then
  :func:`~forgetting.segmentation.augment.augment_sections`), labels unchanged, no other augmentation;
* ``standard+ours``: the augmented set with the standard augmentation.

The identical budget: every arm runs exactly ``S = epochs * ceil(N / batch_size)`` optimizer steps of
``batch_size`` sections each (``N``: the original training sections), drawn as successive shuffles of its
own training set, with the same optimizer, learning rate and class weights (from the original masks). An
arm with a larger set therefore sees each section fewer times, never more gradient steps. Forgetting is
observed on the original training sections and on the test sections every ``ceil(N / batch_size)`` steps,
so every arm's maps come from the same ``epochs`` observations and the region counts are comparable.

Reported per arm, mean and sample standard deviation over the seeds: test pixel accuracy, mean class
accuracy, mIoU, per-class accuracy and IoU, and the count and area of the frequently forgotten regions
(forgetting >= ``tau``, components of at least ``min_region_area`` pixels) on the train and test sections.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from forgetting._config import read_config_file, validate_toml
from forgetting._io import make_directory
from forgetting._lock import directory_lock
from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.inference import to_input
from forgetting.observe import ObservationCallback
from forgetting.segmentation.augment import (
    STYLE_TRANSFERS,
    AugmentedSections,
    augment_sections,
    get_style_transfer,
    select_regions,
)
from forgetting.segmentation.metrics import SegmentationMetrics, segmentation_metrics
from forgetting.segmentation.regions import connected_regions, frequently_forgotten

__all__ = [
    "ARMS",
    "AugmentConfig",
    "AugmentResult",
    "ProtocolData",
    "augment_training_set",
    "default_augment_config",
    "format_table",
    "load_augment_config",
    "load_protocol_data",
    "parse_augment_config",
    "random_flips",
    "rotate_sections",
    "run_arm",
    "run_augment_protocol",
    "standard_augment",
]

logger = logging.getLogger(__name__)

#: The protocol's arms, in report order.
ARMS: tuple[str, ...] = ("baseline", "standard", "ours", "standard+ours")

Arm = Literal["baseline", "standard", "ours", "standard+ours"]
PositiveInt = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class AugmentData(_Strict):
    """Section ``[data]``: the dataset's options, splits and seed (fixed across the protocol's seeds)."""

    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0


class AugmentTrain(_Strict):
    """Section ``[train]``: the budget shared by every arm (``epochs`` of the original training set).

    ``standard_rotation`` (degrees, 0 disables) and ``standard_flips`` (``"none"``, ``"lr"``, ``"lr+ud"``)
    define the ``standard`` arms' augmentation: see :func:`standard_augment`.
    """

    epochs: PositiveInt = 20
    lr: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: PositiveInt = 8
    class_weights: Literal["median", "balanced", "sqrt", "none"] = "median"
    eval_batch_size: PositiveInt = 16
    standard_rotation: Annotated[float, Field(ge=0, le=90)] = 10.0
    standard_flips: Literal["none", "lr", "lr+ud"] = "lr"


class AugmentRegions(_Strict):
    """Section ``[regions]``: which pixels are restyled and how regions are counted in the report."""

    tau: PositiveInt = 2
    min_region_area: PositiveInt = 4
    connectivity: Literal[1, 2] = 2
    top_k_sections: PositiveInt | None = None
    patch_margin: Annotated[int, Field(ge=0)] | None = None
    soft_sigma: Annotated[float, Field(ge=0)] = 1.0


class AugmentStyle(_Strict):
    """Section ``[style]``: the style transfer, its options, the style sources and the copies per section."""

    method: str = "fda"
    options: dict[str, Any] = Field(default_factory=dict)
    source: Literal["train", "test"] = "train"
    copies: PositiveInt = 2


class AugmentReportSettings(_Strict):
    """Section ``[report]``: example figures of original vs augmented sections."""

    examples: Annotated[int, Field(ge=0)] = 4


class AugmentConfig(_Strict):
    """A ``forgetting augment`` config (TOML). Every key is optional; unknown keys are errors."""

    name: str = "augment-seismic"
    seeds: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1
    )
    device: str = "auto"
    dataset: str = "seismic-synthetic"
    model: str = "unet"
    model_options: dict[str, Any] = Field(default_factory=dict)
    ignore_index: int | None = 255
    threads: Annotated[int, Field(ge=0)] = 0
    arms: list[Arm] = Field(default_factory=lambda: list(ARMS), min_length=1)
    data: AugmentData = Field(default_factory=AugmentData)
    train: AugmentTrain = Field(default_factory=AugmentTrain)
    regions: AugmentRegions = Field(default_factory=AugmentRegions)
    style: AugmentStyle = Field(default_factory=AugmentStyle)
    report: AugmentReportSettings = Field(default_factory=AugmentReportSettings)


def parse_augment_config(text: str | Mapping[str, Any], *, source: str = "<augment config>") -> AugmentConfig:
    """Validate TOML text (or a parsed mapping) into an :class:`AugmentConfig`.

    Raises:
        ConfigError: naming the key path and the problem; unknown dataset, model or style method.
    """
    from forgetting.segmentation.maps_config import validate_maps_names

    config = validate_toml(AugmentConfig, text, source=source, what="augment config")
    validate_maps_names(config, source)  # type: ignore[arg-type]  # same fields as MapsConfig
    if config.style.method not in STYLE_TRANSFERS:
        raise UnknownNameError(
            f"{source}: `style.method` = {config.style.method!r}; choose one of {sorted(STYLE_TRANSFERS)} "
            "or register your own with forgetting.segmentation.augment.register_style_transfer"
        )
    get_style_transfer(config.style.method, **config.style.options)  # option errors now, not after training
    if len(set(config.arms)) != len(config.arms) or len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(
            f"{source}: `arms` and `seeds` must not repeat, got {config.arms} and {config.seeds}"
        )
    return config


def load_augment_config(path: str | Path) -> AugmentConfig:
    """Read and validate a ``forgetting augment`` TOML file (see :class:`AugmentConfig`)."""
    return parse_augment_config(read_config_file(path), source=str(path))


def default_augment_config() -> AugmentConfig:
    """The packaged default (``forgetting/segmentation/augment_default.toml``): synthetic seismic, 3 seeds."""
    text = resources.files("forgetting.segmentation").joinpath("augment_default.toml").read_text("utf-8")
    return parse_augment_config(text, source="<built-in augment_default.toml>")


# --------------------------------------------------------------------------------------------------------
# Training with a fixed step budget


def random_flips(
    x_B_C_H_W: torch.Tensor, y_B_H_W: torch.Tensor, generator: torch.Generator, *, updown: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: left-right flip with p 1/2; with ``updown``, also an up-down flip with p 1/2.

    Left-right only by default: for seismic sections an up-down flip reverses the depth order, which no
    real section shows (both flips together are a 180 degree rotation). The same random draws are made
    either way, so the batch stream does not depend on ``updown``.
    """
    b = x_B_C_H_W.shape[0]
    flips_B_2 = (torch.rand(b, 2, generator=generator) < 0.5).to(x_B_C_H_W.device)
    lr, ud = flips_B_2[:, 0], flips_B_2[:, 1] & updown
    x = torch.where(lr[:, None, None, None], x_B_C_H_W.flip(-1), x_B_C_H_W)
    y = torch.where(lr[:, None, None], y_B_H_W.flip(-1), y_B_H_W)
    x = torch.where(ud[:, None, None, None], x.flip(-2), x)
    y = torch.where(ud[:, None, None], y.flip(-2), y)
    return x.contiguous(), y.contiguous()


def rotate_sections(
    x_B_C_H_W: torch.Tensor, y_B_H_W: torch.Tensor, degrees_B: torch.Tensor, *, fill: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each image and its mask by ``degrees_B`` (counter-clockwise on screen) about the centre.

    The rotation is in pixel space (the sampling grid is corrected for the aspect ratio, so a non-square
    section is rotated, not sheared), and the output keeps the input size. Images are sampled bilinearly
    (zeros where the rotated section leaves the frame), masks by nearest neighbour with ``fill`` (the ignore
    index) for every pixel that comes from outside the frame, so those pixels count no loss. Rows with angle
    0 are returned unchanged, bit for bit. ``torch`` only (``affine_grid`` + ``grid_sample``), on the
    device of the inputs, no host sync.

    Args:
        x_B_C_H_W: float images.
        y_B_H_W: int64 masks.
        degrees_B: float ``[B]`` angles in degrees (any device).
        fill: mask value for pixels rotated in from outside.

    Returns:
        The rotated images (float, like ``x``) and masks (int64).
    """
    b, _, h, w = x_B_C_H_W.shape
    device = x_B_C_H_W.device
    rad = torch.deg2rad(degrees_B.to(device=device, dtype=torch.float32))
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel (u, v) samples the input at R(-angle) (u, v) in pixels; in the normalised [-1, 1]
    # coordinates of affine_grid, x = u / (W/2) and y = v / (H/2), hence the aspect-ratio factors.
    theta_B_2_3 = torch.zeros(b, 2, 3, device=device, dtype=torch.float32)
    theta_B_2_3[:, 0, 0] = cos
    theta_B_2_3[:, 0, 1] = -sin * (h / w)
    theta_B_2_3[:, 1, 0] = sin * (w / h)
    theta_B_2_3[:, 1, 1] = cos
    grid = F.affine_grid(theta_B_2_3, [b, 1, h, w], align_corners=False)
    x_rot = F.grid_sample(
        x_B_C_H_W.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).to(x_B_C_H_W.dtype)
    # masks shifted by +1 so that 0 marks "outside the frame" after zero padding
    shifted = (y_B_H_W.to(torch.float32) + 1.0)[:, None]
    y_rot = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
    y_rot = y_rot.round().to(torch.int64) - 1
    y_rot = torch.where(y_rot < 0, torch.full_like(y_rot, fill), y_rot)
    turned = degrees_B.to(device) != 0
    x_out = torch.where(turned[:, None, None, None], x_rot, x_B_C_H_W)
    y_out = torch.where(turned[:, None, None], y_rot, y_B_H_W)
    return x_out.contiguous(), y_out.contiguous()


def standard_augment(
    x_B_C_H_W: torch.Tensor,
    y_B_H_W: torch.Tensor,
    generator: torch.Generator,
    *,
    rotation: float = 10.0,
    flips: Literal["none", "lr", "lr+ud"] = "lr",
    fill: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``standard`` arms' augmentation of one batch: a random rotation, then random flips.

    With probability 1/2 a sample is rotated by ``+rotation`` or ``-rotation`` degrees (either sign with
    probability 1/2): the ``RandomRotate(10)`` of the authors' lab code (olivesgatech/RoSE,
    ``data/datasets/segmentation/common/custom_transforms.py``), which turns by exactly plus or minus 10
    degrees. Unlike that code the section keeps its size (no ``reshape``); pixels rotated in from outside
    get ``fill`` (the ignore index) in the mask and 0 in the image (see :func:`rotate_sections`). Then
    ``flips``: ``"lr"`` left-right with p 1/2, ``"lr+ud"`` also up-down, ``"none"`` no flip. The random
    draws come from ``generator`` (CPU) whatever the options, so the batch stream is the same.
    """
    b = x_B_C_H_W.shape[0]
    draws_B_2 = torch.rand(b, 2, generator=generator)
    angle_B = torch.where(draws_B_2[:, 1] < 0.5, -rotation, rotation) * (draws_B_2[:, 0] < 0.5)
    x, y = x_B_C_H_W, y_B_H_W
    if rotation > 0:
        x, y = rotate_sections(x, y, angle_B, fill=fill)
    if flips == "none":
        torch.rand(b, 2, generator=generator)  # the flips' draws, so the stream matches the other options
        return x, y
    return random_flips(x, y, generator, updown=flips == "lr+ud")


def train_steps(
    model: torch.nn.Module,
    images_N_C_H_W: torch.Tensor,
    masks_N_H_W: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    class_weights: torch.Tensor,
    ignore_index: int | None,
    standard: bool,
    rotation: float = 10.0,
    flips: Literal["none", "lr", "lr+ud"] = "lr",
    seed: int,
    observers: Sequence[ObservationCallback] = (),
    observe_every: int = 1,
) -> float:
    """Train exactly ``steps`` Adam steps on successive seeded shuffles of the set; returns the seconds.

    Batches are consecutive slices of a permutation (the last one of a shuffle may be smaller, as in
    :func:`forgetting.training.fit`); a new permutation starts when one is used up. With ``standard`` each
    batch goes through :func:`standard_augment` (``rotation`` degrees, ``flips``). ``observers`` run every
    ``observe_every`` steps (their wall time is not counted).
    """
    device = next(model.parameters()).device
    images = images_N_C_H_W.to(device)
    masks = masks_N_H_W.to(device)
    n = int(images.shape[0])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    weights = class_weights.to(device)
    loss_ignore = ignore_index if ignore_index is not None else -100
    order = torch.randperm(n, generator=generator)
    pos = 0
    seconds = 0.0
    for obs in observers:
        obs.on_train_begin(model)
    tick = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.train()
        for step in range(1, steps + 1):
            if pos >= n:
                order, pos = torch.randperm(n, generator=generator), 0
            idx = order[pos : pos + batch_size].to(device)
            pos += batch_size
            x, y = to_input(images[idx]), masks[idx]
            if standard:
                x, y = standard_augment(x, y, generator, rotation=rotation, flips=flips, fill=loss_ignore)
            loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=loss_ignore)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if observers and step % observe_every == 0:
                seconds += time.perf_counter() - tick
                for obs in observers:
                    obs.observe(model, epoch=step // observe_every)
                model.train()
                tick = time.perf_counter()
    return seconds + time.perf_counter() - tick


# --------------------------------------------------------------------------------------------------------
# Protocol


@dataclass
class AugmentResult:
    """What :func:`run_augment_protocol` produced.

    Attributes:
        out_dir: the run directory.
        report: ``report/index.html``.
        summary_path: ``summary.json`` (every number, per seed and aggregated).
        table: the before/after table as printed (also in ``table.md``).
        summary: the content of ``summary.json``.
        seconds: total wall time.
    """

    out_dir: Path
    report: Path
    summary_path: Path
    table: str
    summary: dict[str, Any]
    seconds: float


def _regions(
    tracker_forgetting: np.ndarray, valid: np.ndarray, tau: int, connectivity: int, min_area: int
) -> dict[str, int]:
    frequent = frequently_forgotten(tracker_forgetting, tau, valid)
    stats = connected_regions(frequent, connectivity=connectivity, min_area=min_area)
    return {"count": stats.count, "area": stats.total_area}


def _mean_change(images_N_C_H_W: torch.Tensor, augmented: AugmentedSections) -> float:
    """Mean absolute change (grey levels, 0..255) of the stylised copies over their pixels with mask > 0."""
    if len(augmented) == 0:
        return 0.0
    inside = (augmented.masks > 0)[:, None].expand_as(augmented.images)
    diff = (augmented.images.float() - images_N_C_H_W[augmented.source].float()).abs()
    return round(float(diff[inside].mean()), 3) if bool(inside.any()) else 0.0


def _metrics_dict(m: SegmentationMetrics, classes: Sequence[str]) -> dict[str, Any]:
    d = m.to_dict(classes)
    return {k: d[k] for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "class_accuracy", "iou")}


@dataclass(frozen=True)
class ProtocolData:
    """What every arm of one protocol run shares: the splits, the class weights, the valid pixels.

    Attributes:
        dataset: the loaded dataset.
        train: the original training sections (uint8 ``[N, C, H, W]``, int64 masks ``[N, H, W]``).
        test: the test sections.
        classes: the class names (``K`` of them).
        class_weights: float ``[K]``, from the original training masks (``[train] class_weights``).
        valid: bool ``[N, H, W]`` per split name (``"train"``, ``"test"``): pixels that are not ignored.
        device: where the models train.
    """

    dataset: Any
    train: Split
    test: Split
    classes: tuple[str, ...]
    class_weights: torch.Tensor
    valid: dict[str, np.ndarray]
    device: torch.device


def load_protocol_data(config: AugmentConfig) -> ProtocolData:
    """Load the dataset of ``config`` and the pieces shared by every arm (see :class:`ProtocolData`).

    Sets the torch CPU threads when ``config.threads`` is not 0.
    """
    from forgetting.devices import resolve_device
    from forgetting.segmentation.maps import load_segmentation_splits
    from forgetting.segmentation.training import class_weights_from_masks

    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    dataset, train, test, classes = load_segmentation_splits(config, seed=config.data.seed)
    ignore = config.ignore_index
    weights = class_weights_from_masks(
        train.targets, len(classes), scheme=config.train.class_weights, ignore_index=ignore
    )
    valid = {
        name: (split.targets != ignore).numpy() if ignore is not None else np.ones(split.targets.shape, bool)
        for name, split in (("train", train), ("test", test))
    }
    return ProtocolData(dataset, train, test, tuple(classes), weights, valid, device)


def run_arm(
    config: AugmentConfig,
    data: ProtocolData,
    seed: int,
    sections: Split,
    *,
    standard: bool,
    steps: int,
    observe_every: int,
    extra_eval: Mapping[str, Split] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Train one arm from the seed's initial weights for exactly ``steps`` steps and measure it.

    Forgetting is observed on the original training sections and on the test sections every
    ``observe_every`` steps (the protocol uses ``steps / observe_every = epochs`` observations in every arm).

    Args:
        config: the run's settings (model, ``[train]``, ``[regions]`` for the region counts).
        data: from :func:`load_protocol_data`.
        seed: the initial weights and the batch order.
        sections: what the arm trains on (the original or the augmented training set).
        standard: apply :func:`standard_augment` to every batch.
        steps: optimizer steps.
        observe_every: steps between two forgetting observations.
        extra_eval: more labelled splits (same classes) to report test metrics on, as ``record["eval"]``.

    Returns:
        The arm's record (``sections``, ``steps``, ``seconds``, ``test`` metrics, ``regions`` count and area
        of the frequently forgotten regions on ``train`` and ``test``) and the per-pixel forgetting counts of
        the training sections, int ``[N, H, W]``.
    """
    from forgetting.models import build_from_ref
    from forgetting.segmentation.training import predict_segmentation

    ignore = config.ignore_index
    k = len(data.classes)
    reg = config.regions
    model = build_from_ref(
        config.model, data.dataset.in_channels, k, seed=seed, options=config.model_options
    ).to(data.device)
    observers = [
        ObservationCallback(
            split.images,
            split.targets,
            every=observe_every,
            unit="step",
            batch_size=config.train.eval_batch_size,
            ignore_index=ignore,
            name=name,
        )
        for name, split in (("train", data.train), ("test", data.test))
    ]
    seconds = train_steps(
        model,
        sections.images,
        sections.targets,
        steps=steps,
        batch_size=config.train.batch_size,
        lr=config.train.lr,
        class_weights=data.class_weights,
        ignore_index=ignore,
        standard=standard,
        rotation=config.train.standard_rotation,
        flips=config.train.standard_flips,
        seed=seed,
        observers=observers,
        observe_every=observe_every,
    )
    record: dict[str, Any] = {"sections": len(sections), "steps": steps, "seconds": round(seconds, 2)}
    pred, _ = predict_segmentation(model, data.test.images, batch_size=config.train.eval_batch_size)
    metrics = segmentation_metrics(pred.cpu(), data.test.targets, k, ignore)
    record["test"] = _metrics_dict(metrics, data.classes)
    if extra_eval:
        record["eval"] = {}
        for name, split in extra_eval.items():
            pred, _ = predict_segmentation(model, split.images, batch_size=config.train.eval_batch_size)
            extra = segmentation_metrics(pred.cpu(), split.targets, k, ignore)
            record["eval"][name] = _metrics_dict(extra, data.classes)
    record["regions"] = {}
    train_forgetting = np.zeros(0)
    for obs in observers:
        forgetting = obs.tracker.to_numpy(["forgetting"])["forgetting"]
        record["regions"][obs.name] = _regions(
            forgetting, data.valid[obs.name], reg.tau, reg.connectivity, reg.min_region_area
        )
        if obs.name == "train":
            train_forgetting = forgetting
    logger.info(
        "seed %d %-8s %d steps: test mIoU %.3f, train FF regions %d (%d px), test %d (%d px), %.1f s",
        seed,
        "standard" if standard else "plain",
        steps,
        record["test"]["mean_iou"] or math.nan,
        record["regions"]["train"]["count"],
        record["regions"]["train"]["area"],
        record["regions"]["test"]["count"],
        record["regions"]["test"]["area"],
        seconds,
    )
    return record, train_forgetting


def augment_training_set(
    config: AugmentConfig, data: ProtocolData, train_forgetting_N_H_W: np.ndarray, seed: int
) -> tuple[Split, AugmentedSections, dict[str, Any]]:
    """The ``ours`` training set: the original sections plus the stylised copies of the selected ones.

    Regions come from :func:`~forgetting.segmentation.augment.select_regions` on the baseline's training
    forgetting counts (``[regions]``), copies from
    :func:`~forgetting.segmentation.augment.augment_sections` (``[style]``: method, options, copies and the
    style sources, other training sections or the test sections; its randomness seeded by ``seed``).
    Returns the augmented split (copies keep their source's mask), the copies, and the selection summary
    (selected sections, copies, selected pixels, set size, mean absolute change inside the masks).
    """
    reg = config.regions
    transfer = get_style_transfer(config.style.method, **config.style.options)
    region_masks = select_regions(
        train_forgetting_N_H_W,
        tau=reg.tau,
        top_k_sections=reg.top_k_sections,
        patch_margin=reg.patch_margin,
        soft_sigma=reg.soft_sigma,
        valid_N_H_W=data.valid["train"],
        min_area=reg.min_region_area,
        connectivity=reg.connectivity,
    )
    train = data.train
    augmented = augment_sections(
        train.images,
        region_masks,
        train.images if config.style.source == "train" else data.test.images,
        transfer,
        copies=config.style.copies,
        generator=torch.Generator().manual_seed(seed),
        pool_is_content=config.style.source == "train",
    )
    aug_split = Split(
        torch.cat([train.images, augmented.images]),
        torch.cat([train.targets, train.targets[augmented.source]]),
    )
    selection = {
        "sections": int(torch.unique(augmented.source).numel()),
        "stylised_copies": len(augmented),
        "selected_pixels": float(region_masks.sum()),
        "augmented_set": len(aug_split),
        "mean_abs_change_in_mask": _mean_change(train.images, augmented),
    }
    return aug_split, augmented, selection


#: The columns of the before/after table: (key path in a seed's arm record, header, digits).
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("test.mean_iou", "test mIoU", 3),
    ("test.pixel_accuracy", "test pixel acc", 3),
    ("test.mean_class_accuracy", "test class acc", 3),
    ("regions.train.count", "train FF regions", 1),
    ("regions.train.area", "train FF area", 0),
    ("regions.test.count", "test FF regions", 1),
    ("regions.test.area", "test FF area", 0),
)


def _get(record: Mapping[str, Any], path: str) -> float:
    value: Any = record
    for part in path.split("."):
        value = value[part]
    return math.nan if value is None else float(value)


def aggregate(per_seed: Mapping[str, Mapping[str, Any]], arms: Sequence[str], classes: Sequence[str]) -> dict:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds of every table column and per-class metric."""
    out: dict[str, Any] = {}
    seeds = list(per_seed)
    paths = [p for p, _, _ in TABLE_COLUMNS]
    paths += [f"test.class_accuracy.{c}" for c in classes] + [f"test.iou.{c}" for c in classes]
    for arm in arms:
        out[arm] = {}
        for path in paths:
            values = np.array([_get(per_seed[s][arm], path) for s in seeds], dtype=np.float64)
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
            std = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else 0.0
            out[arm][path] = {
                "mean": None if math.isnan(mean) else mean,
                "std": std,
                "values": [None if math.isnan(v) else v for v in values.tolist()],
            }
    return out


def format_table(aggregated: Mapping[str, Mapping[str, Any]], arms: Sequence[str], n_seeds: int) -> str:
    """The before/after table in Markdown: one row per arm, ``mean ± std`` over the seeds."""
    head = ["arm", *(h for _, h, _ in TABLE_COLUMNS)]
    lines = [
        f"before/after over {n_seeds} seed{'s' if n_seeds != 1 else ''} "
        "(mean ± std; FF = frequently forgotten)",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for arm in arms:
        cells = [arm]
        for path, _, digits in TABLE_COLUMNS:
            cell = aggregated[arm][path]
            mean = cell["mean"]
            cells.append("n/a" if mean is None else f"{mean:.{digits}f} ± {cell['std']:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_augment_protocol(
    config: AugmentConfig | None = None,
    out_dir: str | Path = "runs/augment",
    *,
    seeds: Sequence[int] | None = None,
) -> AugmentResult:
    """Baseline -> maps -> augmented training set -> retrain with the identical budget, per seed; report.

    Args:
        config: the settings; default :func:`default_augment_config`.
        out_dir: the run directory (created; files in it are overwritten).
        seeds: override ``config.seeds``.

    Raises:
        ConfigError: bad ``seeds``, or ``out_dir`` is not a writable directory (checked before anything runs).
        DirectoryInUseError: another process runs into ``out_dir`` (one run per directory).
    """
    config = config or default_augment_config()
    seed_list = list(config.seeds if seeds is None else seeds)
    if not seed_list or len(set(seed_list)) != len(seed_list) or min(seed_list) < 0:
        raise ConfigError(f"seeds must be distinct non-negative integers, at least one; got {seed_list}")
    out = make_directory(out_dir, what="run directory", hint="pass another --out")
    with directory_lock(out, what="a forgetting-augment run"):
        return _run_augment_protocol(config, out, seed_list)


def _run_augment_protocol(config: AugmentConfig, out: Path, seed_list: list[int]) -> AugmentResult:
    from forgetting.segmentation.augment_report import write_augment_report

    start = time.perf_counter()
    data = load_protocol_data(config)
    train, test, classes = data.train, data.test, data.classes
    n = len(train)
    per_epoch = math.ceil(n / config.train.batch_size)
    steps = config.train.epochs * per_epoch
    logger.info(
        "augment: %s train %s test %s; %d arms x %d seeds, %d steps each (%d epochs of %d sections)",
        data.dataset.name,
        tuple(train.images.shape),
        tuple(test.images.shape),
        len(config.arms),
        len(seed_list),
        steps,
        config.train.epochs,
        n,
    )

    per_seed: dict[str, dict[str, Any]] = {}
    examples: dict[str, Any] = {}
    for seed in seed_list:
        records: dict[str, Any] = {}
        base, forgetting = run_arm(
            config, data, seed, train, standard=False, steps=steps, observe_every=per_epoch
        )
        if "baseline" in config.arms:
            records["baseline"] = base
        aug_split, augmented, selection = augment_training_set(config, data, forgetting, seed)
        if not examples:
            examples = {"seed": seed, "augmented": augmented, "originals": train.images[augmented.source]}
        for arm in config.arms:
            if arm == "baseline":
                continue
            sections = aug_split if arm in ("ours", "standard+ours") else train
            records[arm], _ = run_arm(
                config,
                data,
                seed,
                sections,
                standard=arm in ("standard", "standard+ours"),
                steps=steps,
                observe_every=per_epoch,
            )
        per_seed[str(seed)] = {**records, "selection": selection}

    arms = list(config.arms)
    aggregated = aggregate({s: {a: r[a] for a in arms} for s, r in per_seed.items()}, arms, classes)
    table = format_table(aggregated, arms, len(seed_list))
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "name": config.name,
        "dataset": data.dataset.name,
        "model": config.model,
        "device": str(data.device),
        "classes": list(classes),
        "seeds": seed_list,
        "arms": arms,
        "budget": {
            "steps": steps,
            "batch_size": config.train.batch_size,
            "epochs_of_original_set": config.train.epochs,
            "observations": config.train.epochs,
            "observe_every_steps": per_epoch,
            "standard_rotation": config.train.standard_rotation,
            "standard_flips": config.train.standard_flips,
        },
        "style": {
            "method": config.style.method,
            "options": dict(config.style.options),
            "source": config.style.source,
            "copies": config.style.copies,
        },
        "regions": config.regions.model_dump(mode="json"),
        "per_seed": per_seed,
        "aggregate": aggregated,
        "table": table,
    }
    report = write_augment_report(
        out,
        summary,
        table=table,
        classes=classes,
        examples=examples,
        max_examples=config.report.examples,
        config_json=config.model_dump(mode="json"),
    )
    seconds = time.perf_counter() - start
    summary["seconds"] = round(seconds, 1)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    summary_path = out / "summary.json"
    tmp = out / f".summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, summary_path)
    logger.info("augment protocol written to %s in %.0f s", out, seconds)
    return AugmentResult(out, report, summary_path, table, summary, seconds)
