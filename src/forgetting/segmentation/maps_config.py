"""The config of ``forgetting maps`` (``maps.toml``): the schema, parsing, validation and the defaults."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from forgetting._config import read_config_file, validate_toml
from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.settings import (
    ClassWeights,
    NonNegativeInt,
    OptimizerSettings,
    PositiveFloat,
    PositiveInt,
    Seed,
    Strict,
)

__all__ = [
    "MapsAnalysisSettings",
    "MapsConfig",
    "MapsData",
    "MapsTrack",
    "MapsTrain",
    "check_segmentation_model",
    "default_maps_config",
    "load_maps_config",
    "parse_maps_config",
    "validate_maps_names",
]

logger = logging.getLogger(__name__)


class MapsData(Strict):
    """Section ``[data]``: where the sections come from.

    ``root``: the folder (or ``.npz``) of a user-supplied dataset (``f3``, ``arrays``); ``options``: the
    dataset's options (``forgetting datasets``); ``train_split`` / ``test_split``: the split names;
    ``seed``: the dataset's seed (default: the run's ``seed``).
    """

    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    seed: Seed | None = None


class MapsTrain(OptimizerSettings):
    """Section ``[train]``: how the segmenter is trained: the optimizer settings of
    :class:`~forgetting.settings.OptimizerSettings` (``lr`` 2e-3 and ``batch_size`` 8 by default), a fixed
    number of ``epochs``, left-right ``flip`` augmentation, and the cross-entropy ``class_weights`` (a scheme
    or one weight per class)."""

    lr: PositiveFloat = 2e-3
    batch_size: PositiveInt = 8
    epochs: PositiveInt = 24
    flip: bool = True
    class_weights: ClassWeights = "median"


class MapsTrack(Strict):
    """Section ``[track]``: the per-pixel observation passes."""

    every: PositiveInt = 1
    test: bool = True
    batch_size: PositiveInt = 16


class MapsAnalysisSettings(Strict):
    """Section ``[maps]``: region statistics, temporal groups, correlations and the map PNGs."""

    tau: PositiveInt = 2
    connectivity: Literal[1, 2] = 2
    min_region_area: PositiveInt = 4
    early_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    sections: PositiveInt | list[NonNegativeInt] = 3
    max_correlation_points: PositiveInt = 200_000


class MapsConfig(Strict):
    """A ``forgetting maps`` config (TOML). Every key is optional; unknown keys are errors.

    Top level: ``name``, ``seed``, ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``), ``dataset``
    (a segmentation dataset name), ``model`` (``unet`` or ``deconvnet``), ``model_options``, ``ignore_index``
    (mask value that counts nothing; padding of the seismic datasets is 255). Sections: ``[data]``
    (:class:`MapsData`), ``[train]`` (:class:`MapsTrain`), ``[track]`` (:class:`MapsTrack`), ``[maps]``
    (:class:`MapsAnalysisSettings`).
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = "maps-seismic"
    seed: Seed = 0
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
        validate_maps_names(config, source)
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


def validate_maps_names(config: MapsConfig, source: str) -> None:
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
