"""The settings of a labelling project: ``forgetting.toml``, validated by pydantic.

Example (written by :func:`forgetting.annotate.init_project`; every key but ``images.path`` has a default)::

    classes = ["cat", "dog"]
    fixed_classes = true          # labels outside `classes` are refused; false: new names are added
    model = "small-cnn"
    strategy = "gauss"            # the default of `forgetting query`
    query_size = 20
    label_studio_url_prefix = "/data/local-files/?d=pets/"  # Label Studio's URL of the image folder

    [images]
    path = "/data/pets"           # a folder of image files, or an .npz/.npy file
    # key = "images"              # the array inside an .npz;  size = [64, 64] resizes folder images

    [model_options]
    width = 16

    [strategy_options.gauss]      # options per strategy name

    [train]                       # as [train] of an experiment config
    max_epochs = 50

    [track]                       # as [track] of an experiment config
    every = 1

A segmentation project (``task = "segmentation"``, model ``unet`` by default) adds::

    [segmentation]                # as [segmentation] of an experiment config
    ignore_index = 255            # mask value of unlabelled pixels; "none": every value is a class
    reduction = "mean"            # pixel scores -> one score per image: mean, sum, top-q, class-balanced
    top_q = 0.1                   # the fraction of pixels top-q averages
    class_weights = "median"      # median, balanced, sqrt, none, or one weight per class

``[train]``, ``[track]`` and ``[segmentation]`` are validated by the settings schema, as in experiment
configs (:class:`~forgetting.settings.TrainSettings`, :class:`~forgetting.settings.TrackSettings` and
:class:`~forgetting.settings.SegmentationSettings`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forgetting._config import validate_toml
from forgetting._io import atomic_write_text
from forgetting.annotate.sources import ImageSource
from forgetting.exceptions import ConfigError, ProjectError
from forgetting.loop import LoopConfig
from forgetting.settings import (
    NonNegativeInt,
    PositiveInt,
    SegmentationSettings,
    TrackSettings,
    TrainSettings,
)
from forgetting.tasks import Task, get_task

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "TASKS",
    "ImageSettings",
    "ProjectSegmentationSettings",
    "ProjectSettings",
    "dump_settings",
    "load_settings",
    "save_settings",
    "validate_settings",
]

MANIFEST_FILE = "forgetting.toml"
FORMAT_VERSION = 1
#: What a project labels: one class per image, or one class per pixel (masks).
TASKS: tuple[str, ...] = ("classification", "segmentation")
#: The default mask value of unlabelled pixels in a segmentation project.
DEFAULT_IGNORE_INDEX = 255


class ImageSettings(BaseModel):
    """Section ``[images]``: where the images are and how to read them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str
    key: str | None = None
    size: list[PositiveInt] | None = None
    layout: Literal["auto", "NCHW", "NHWC"] = "auto"

    @field_validator("size")
    @classmethod
    def _two_sides(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(v) != 2:
            raise ValueError("give [height, width]")
        return v


class ProjectSegmentationSettings(SegmentationSettings):
    """Section ``[segmentation]`` of a segmentation project: the experiments' ``[segmentation]``, except that
    ``ignore_index`` is a mask value (default 255) or ``"none"`` (every value is a class)."""

    ignore_index: NonNegativeInt | Literal["none"] = DEFAULT_IGNORE_INDEX

    @property
    def ignore(self) -> int | None:
        """The ignore index as a number, ``None`` for ``"none"``."""
        return None if self.ignore_index == "none" else int(self.ignore_index)


class ProjectSettings(BaseModel):
    """The contents of ``forgetting.toml`` (every key but ``images.path`` has a default; ``model`` defaults
    to ``unet`` when ``task = "segmentation"``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format_version: int = FORMAT_VERSION
    task: Literal["classification", "segmentation"] = "classification"
    classes: list[str] = Field(default_factory=list)
    fixed_classes: bool = False
    model: str = "small-cnn"
    embedding_layer: str | None = None
    strategy: str = "gauss"
    query_size: int = Field(20, ge=1)
    mc_samples: int = Field(20, ge=1)
    pool_subsample: int | None = Field(None, ge=1)
    device: str | None = None
    eval_batch_size: int | None = Field(None, ge=1)
    label_studio_url_prefix: str = "/data/local-files/?d="
    images: ImageSettings
    model_options: dict[str, Any] = Field(default_factory=dict)
    strategy_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train: TrainSettings = Field(default_factory=TrainSettings)
    track: TrackSettings = Field(default_factory=TrackSettings)
    segmentation: ProjectSegmentationSettings | None = None

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        names = [c.strip() for c in v]
        if any(not c for c in names) or len(set(names)) != len(names):
            raise ValueError(f"class names must be non-empty and unique, got {v}")
        return names

    @model_validator(mode="after")
    def _segmentation_section(self) -> ProjectSettings:
        if self.task == "classification":
            if self.segmentation is not None:
                raise ValueError('[segmentation] applies to task = "segmentation" only; remove it')
            return self
        if self.segmentation is None:
            self.segmentation = ProjectSegmentationSettings()
        if "model" not in self.model_fields_set:
            self.model = "unet"
        k = len(self.classes)
        if k < 2:
            raise ValueError(
                "a segmentation project needs at least 2 classes (the mask values 0..K-1), "
                f"got {self.classes}"
            )
        ignore = self.segmentation.ignore
        if ignore is not None and ignore < k:
            raise ValueError(
                f"segmentation.ignore_index = {ignore} is the id of class {self.classes[ignore]!r} "
                f"(class ids are 0..{k - 1}); use a value >= {k}, e.g. 255"
            )
        weights = self.segmentation.class_weights
        if not isinstance(weights, str) and len(weights) != k:
            raise ValueError(f"segmentation.class_weights: {len(weights)} weights for {k} classes")
        return self

    @property
    def ignore_index(self) -> int | None:
        """The mask value of unlabelled pixels (segmentation), or ``None``."""
        return self.segmentation.ignore if self.segmentation is not None else None

    def task_options(self) -> dict[str, Any]:
        """The options of the project's task (segmentation: ignore index, reduction, top-q, class
        weights; classification: none)."""
        if self.segmentation is None:
            return {}
        return self.segmentation.to_options().model_dump()

    def build_task(self) -> Task:
        """The project's :class:`~forgetting.tasks.base.Task` (from the task registry, by name)."""
        names = self.classes if self.classes else ["0"]
        return get_task(self.task, max(len(self.classes), 1), class_names=names, **self.task_options())

    def source(self, root: Path) -> ImageSource:
        """The image source (a relative ``images.path`` is relative to the project directory)."""
        path = Path(self.images.path).expanduser()
        size = tuple(self.images.size) if self.images.size else None
        return ImageSource.from_path(
            path if path.is_absolute() else root / path,
            key=self.images.key,
            size=size,  # type: ignore[arg-type]
            layout=self.images.layout,
        )

    def loop_config(self, strategy: str, strategy_options: Mapping[str, Any], seed: int) -> LoopConfig:
        """The :class:`~forgetting.loop.LoopConfig` a query runs with."""
        return LoopConfig(
            model=self.model,
            model_options=dict(self.model_options),
            strategy=strategy,
            embedding_layer=self.embedding_layer,
            strategy_options=dict(strategy_options),
            seed=seed,
            train=self.train.to_train_config(),
            train_fn=self.train.function,
            track=self.track.to_track_config(),
            mc_samples=self.mc_samples,
            pool_subsample=self.pool_subsample,
            device=self.device,
            eval_batch_size=self.eval_batch_size,
        )


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + items + "}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to {MANIFEST_FILE}")


def _toml_table(name: str, data: Mapping[str, Any]) -> list[str]:
    lines = [f"[{name}]"] if name else []
    tables = []
    for key, value in data.items():
        if value is None:
            continue  # TOML has no null: a missing key means the default
        if isinstance(value, dict) and name:
            tables.append((f"{name}.{_toml_key(key)}", value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for sub, value in tables:
        lines += ["", *_toml_table(sub, value)]
    return lines


_MANIFEST_HEADER = """\
# A forgetting labelling project. Edit freely; `forgetting query` reads this file every time.
# images.path: a folder of image files or an .npz/.npy file (relative paths are relative to this file).
# classes: the class names; with fixed_classes = false, new names in imported labels are added.
# [train], [track]: as in experiment configs (see `forgetting run --help` and docs/guide/experiments.md).
# task = "segmentation": masks of class ids 0..K-1 per pixel; [segmentation] ignore_index marks unlabelled
# pixels, reduction / top_q turn pixel scores into one score per image.
"""


def dump_settings(settings: ProjectSettings) -> str:
    """``settings`` as the text of ``forgetting.toml``."""
    data = settings.model_dump(mode="json")
    tables = ("images", "model_options", "strategy_options", "train", "track", "segmentation")
    lines = _toml_table("", {k: v for k, v in data.items() if k not in tables})
    for name in tables:
        if data.get(name) is not None:
            lines += ["", *_toml_table(name, data[name])]
    return _MANIFEST_HEADER + "\n" + "\n".join(lines) + "\n"


def load_settings(path: Path) -> ProjectSettings:
    """Read and validate ``forgetting.toml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc}") from exc
    settings = validate_settings(text, source=str(path))
    if settings.format_version > FORMAT_VERSION:
        raise ProjectError(
            f"{path}: format_version {settings.format_version} was written by a newer forgetting; upgrade it"
        )
    return settings


def validate_settings(raw: str | Mapping[str, Any], *, source: str) -> ProjectSettings:
    """Validate TOML text or a mapping into :class:`ProjectSettings`; a :class:`ProjectError` lists every
    bad key and value."""
    return validate_toml(
        ProjectSettings, raw, source=source, what="project settings", error=ProjectError, strict=False
    )


def save_settings(path: Path, settings: ProjectSettings) -> Path:
    """Write ``forgetting.toml`` atomically."""
    return atomic_write_text(path, dump_settings(settings))
