"""The TOML config of ``forgetting profile`` and the run it describes (:func:`run_profile_config`).

Every key is optional (the defaults profile ``mnist-5k`` with ``small-cnn``); unknown keys are errors that
name the key and the allowed ones. ``examples/profile-mnist5k.toml`` spells out every key::

    name = "profile-mnist5k"
    seed = 0
    device = "auto"              # auto, cpu, cuda, cuda:1, mps
    dataset = "mnist-5k"         # a registered dataset, or "pkg.mod:fn" returning your data
    model = "small-cnn"          # a zoo or registered model, or "pkg.mod:fn"
    [model_options]
    width = 8
    [data]                       # root, options, splits, a seeded subset, synthetic label noise
    [train]                      # the built-in trainer (a fixed number of epochs), or function = "pkg.mod:fn"
    [profile]                    # observe = "presentation" | "eval", history, thumbnails, prune
    [mislabel]                   # runs, percentile, fraction of the AUM threshold samples
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset as TorchDataset

from forgetting._config import read_config_file, validate_toml
from forgetting.data.dataset import Dataset
from forgetting.data.source import DatasetSource, DataSource, TensorSource
from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.profile.mislabel import MislabelSettings
from forgetting.profile.noise import flip_labels
from forgetting.profile.result import ProfileResult
from forgetting.profile.run import profile
from forgetting.training import TrainConfig

__all__ = ["ProfileConfig", "load_profile_config", "parse_profile_config", "run_profile_config"]

logger = logging.getLogger(__name__)

PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProfileData(_Strict):
    """Section ``[data]``.

    ``root``: the folder (or ``.npz``) of a user-supplied dataset (``arrays``, ``image-folder``, ``cifar10``);
    ``options``: the dataset's options (``forgetting datasets``); ``train_split`` / ``test_split``: split
    names (``test_split = ""``: no test set); ``limit``: profile a seeded stratified subset of this many
    training samples; ``label_noise`` / ``noise``: flip this fraction of the training labels (``uniform``
    or ``class-conditional``, seeded) to see how the flags fare; the flipped rows are a column of the table.
    """

    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    limit: PositiveInt | None = None
    label_noise: Annotated[float, Field(ge=0, lt=1)] = 0.0
    noise: Literal["uniform", "class-conditional"] = "uniform"


class ProfileTrain(_Strict):
    """Section ``[train]``: the built-in trainer (a fixed number of epochs, so every sample's dynamics cover
    the same epochs), or ``function``: the import path of your training function
    ``(model, labeled, observer)``."""

    epochs: PositiveInt = 10
    lr: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: PositiveInt = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    schedule: Literal["constant", "plateau", "cosine"] = "constant"
    augment: bool = False
    function: str | None = None


class ProfileSettings(_Strict):
    """Section ``[profile]``: ``observe`` (``presentation``: the training batches' own predictions, Toneva
    et al.; ``eval``: an eval-mode pass after every epoch), ``history`` (cartography-style per-epoch JSONL),
    ``thumbnails`` per gallery, ``prune`` (fractions for the pruning experiment)."""

    observe: Literal["presentation", "eval"] = "presentation"
    history: bool = False
    thumbnails: PositiveInt = 24
    prune: list[Fraction] = Field(default_factory=list)


class ProfileMislabel(_Strict):
    """Section ``[mislabel]``: AUM threshold samples (``runs = 0`` turns the flags off)."""

    runs: Annotated[int, Field(ge=0)] = 2
    percentile: Annotated[float, Field(gt=0, le=100)] = 99.0
    fraction: Fraction | None = None


class ProfileConfig(_Strict):
    """A ``forgetting profile`` config. Top level: ``name``, ``seed``, ``device``, ``dataset``,
    ``num_classes`` (for a dataset of your own, default the largest label + 1), ``model``,
    ``model_options``; sections ``[data]``, ``[train]``, ``[profile]``, ``[mislabel]``."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = "profile-mnist5k"
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"
    dataset: str = "mnist-5k"
    num_classes: PositiveInt | None = None
    model: str = "small-cnn"
    model_options: dict[str, Any] = Field(default_factory=lambda: {"width": 8, "embed_dim": 64})
    data: ProfileData = Field(default_factory=ProfileData)
    train: ProfileTrain = Field(default_factory=ProfileTrain)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    mislabel: ProfileMislabel = Field(default_factory=ProfileMislabel)


def parse_profile_config(
    text: str | Mapping[str, Any], *, source: str = "<profile config>", validate_names: bool = True
) -> ProfileConfig:
    """Validate TOML text (or a parsed mapping) into a :class:`ProfileConfig`.

    With ``validate_names`` a dataset name must be registered and a zoo model's options valid.

    Raises:
        ConfigError / UnknownNameError: naming the key, the bad value and the allowed keys or values.
    """
    config = validate_toml(ProfileConfig, text, source=source, what="profile config")
    if validate_names:
        from forgetting.data import list_datasets
        from forgetting.models import is_import_path, validate_model_ref

        if ":" not in config.dataset and config.dataset not in list_datasets():
            raise UnknownNameError(
                f"{source}: `dataset` = {config.dataset!r} is not a known dataset; known: "
                f"{', '.join(list_datasets())}, or the import path of a function returning your data "
                "('pkg.mod:fn')"
            )
        try:
            validate_model_ref(config.model, config.model_options if not is_import_path(config.model) else {})
        except ConfigError as exc:
            raise ConfigError(f"{source}: `model` / `model_options`: {exc}") from None
    return config


def load_profile_config(path: str | Path, *, validate_names: bool = True) -> ProfileConfig:
    """Read and validate a ``forgetting profile`` TOML file (see :class:`ProfileConfig`)."""
    return parse_profile_config(read_config_file(path), source=str(path), validate_names=validate_names)


def _as_source(obj: object, what: str) -> DataSource:
    if isinstance(obj, DataSource):
        return obj
    if isinstance(obj, TorchDataset):
        return DatasetSource(obj)
    raise ConfigError(f"{what} must be a forgetting DataSource or a torch Dataset, got {type(obj).__name__}")


def _load_data(
    config: ProfileConfig,
) -> tuple[DataSource, DataSource | None, int | None, tuple[str, ...] | None]:
    """``(train, test, K or None, class names or None)`` of the config's data."""
    d = config.data
    if ":" in config.dataset:
        from forgetting.models import import_object

        fn = import_object(config.dataset, what="dataset function")
        if not callable(fn):
            raise ConfigError(f"dataset {config.dataset!r} names a {type(fn).__name__}, not a function")
        obj = fn(**d.options)
        if isinstance(obj, Dataset):
            return _splits(obj, config)
        if isinstance(obj, tuple):
            if len(obj) != 2:
                raise ConfigError(
                    f"dataset function {config.dataset!r} must return (train, test), got {len(obj)} items"
                )
            test = None if obj[1] is None else _as_source(obj[1], "its test set")
            return _as_source(obj[0], "its training set"), test, config.num_classes, None
        return _as_source(obj, f"the result of {config.dataset!r}"), None, config.num_classes, None
    from forgetting.data import load_dataset

    data = load_dataset(config.dataset, root=d.root, seed=config.seed, **d.options)
    if data.task != "classification":
        raise ConfigError(
            f"`dataset` = {config.dataset!r} is a {data.task} dataset; profile explains classifiers"
        )
    return _splits(data, config)


def _splits(
    data: Dataset, config: ProfileConfig
) -> tuple[DataSource, DataSource | None, int, tuple[str, ...]]:
    d = config.data
    try:
        train = data.split(d.train_split)
        test = data.split(d.test_split) if d.test_split else None
    except KeyError as exc:
        raise ConfigError(f"[data]: {exc.args[0]}") from None
    return train, test, data.num_classes, tuple(data.classes)


def run_profile_config(
    config: ProfileConfig,
    out_dir: str | Path,
    *,
    prune: list[float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProfileResult:
    """Run the profile a config describes into ``out_dir`` (``prune`` overrides ``[profile] prune``).

    With ``[data] label_noise``, the table gains a ``label_flipped`` column and ``summary.json`` the
    precision and recall of the flags against the flipped rows.
    """
    train, test, k, names = _load_data(config)
    d = config.data
    if d.limit is not None and d.limit < len(train):
        from forgetting.data import stratified_subset

        rows = stratified_subset(train.read_targets(), d.limit, seed=config.seed)
        train = train.subset(rows)
    flipped = None
    if d.label_noise > 0:
        labels = train.read_targets().numpy()
        kk = k if k is not None else int(labels.max()) + 1
        noisy, flipped = flip_labels(labels, d.label_noise, d.noise, kk, seed=config.seed)
        tensors = train.as_tensors()
        if tensors is None:
            from forgetting.profile.train import relabeled

            train = relabeled(train, torch.from_numpy(noisy))
        else:
            train = TensorSource(tensors[0], torch.from_numpy(noisy).to(tensors[0].device))
    t = config.train
    return profile(
        train,
        test=test,
        num_classes=k or config.num_classes,
        class_names=names,
        model=config.model,
        model_options=config.model_options,
        train=TrainConfig(
            epochs=t.epochs,
            lr=t.lr,
            batch_size=t.batch_size,
            optimizer=t.optimizer,
            weight_decay=t.weight_decay,
            schedule=t.schedule,
            augment=t.augment,
        ),
        train_fn=t.function,
        observe=config.profile.observe,
        mislabel=MislabelSettings(
            runs=config.mislabel.runs,
            percentile=config.mislabel.percentile,
            fraction=config.mislabel.fraction,
        ),
        prune=list(config.profile.prune) if prune is None else prune,
        seed=config.seed,
        device=config.device,
        out_dir=out_dir,
        history=config.profile.history,
        thumbnails=config.profile.thumbnails,
        label_flipped=flipped,
        progress=progress,
    )
