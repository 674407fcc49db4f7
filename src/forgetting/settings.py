"""The settings schema: one pydantic model per concept, shared by the runtime and by every TOML file.

Every config of the project composes these (experiments, ``forgetting maps``, ``forgetting augment``,
``forgetting profile``, labelling projects); each adds only the keys that are its own, and a different
default is a subclass that overrides it, never a copy of the fields.

* :class:`Strict`: the base of every TOML section: unknown keys are errors, values are not coerced
  (``lr = "1e-3"`` is refused), models are frozen, and ``inf`` / ``nan`` (TOML literals) are refused.
* Value types: :data:`PositiveInt`, :data:`NonNegativeInt`, :data:`PositiveFloat`, :data:`NonNegativeFloat`,
  :data:`UnitFraction` (``(0, 1]``), :data:`Seed`; the choices :data:`Optimizer`, :data:`Schedule`,
  :data:`AccuracySource`, :data:`ClassWeighting` / :data:`ClassWeights`, :data:`Reduction`, each with the
  tuple of its values (:data:`OPTIMIZERS`, ...).
* Training: :class:`OptimizerSettings` (optimizer, learning rate, weight decay, schedule, batch size: what
  every trainer of the project takes), extended by the runtime :class:`TrainConfig` (what
  :func:`forgetting.training.fit` runs) and by :class:`TrainSettings` (section ``[train]`` of an experiment
  or a labelling project: TOML spells "no epoch cap" ``max_epochs = "none"`` and adds ``function``).
  :meth:`TrainSettings.to_train_config` is the one conversion.
* Segmentation: :class:`SegmentationOptions` (what a :class:`~forgetting.segmentation.task.SegmentationTask`
  runs with) and :class:`SegmentationSettings` (section ``[segmentation]``: ``ignore_index`` may also be
  ``"dataset"``); :meth:`SegmentationSettings.to_options` is the one conversion.
* Tracking: :class:`TrackConfig` (when the loop observes the pool) and :class:`TrackSettings` (section
  ``[track]``: ``subsample = "all"``, and the input key ``preset``); :meth:`TrackSettings.to_track_config`
  is the one conversion. The named schedules are :data:`TRACK_PRESETS`.

The runtime models (:class:`TrainConfig`, :class:`SegmentationOptions`) take keyword arguments, convert
numbers (``lr=1`` is ``1.0``) and raise :class:`~forgetting.exceptions.ConfigError` naming the key and the
allowed values; the TOML sections raise pydantic errors that :func:`forgetting._config.validate_toml` turns
into the same kind of message, with the key path in the file.

This module imports no other ``forgetting`` module but the exceptions and the config helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgetting._config import describe_validation_error
from forgetting.exceptions import ConfigError, check_choice

__all__ = [
    "ACCURACY_SOURCES",
    "CLASS_WEIGHTING",
    "DEFAULT_TRACK_PRESET",
    "FIRST_OBSERVATIONS",
    "OPTIMIZERS",
    "REDUCTIONS",
    "SCHEDULES",
    "SEED_MAX",
    "SUBSAMPLE_MODES",
    "TRACK_PRESETS",
    "UNCAPPED_EPOCH_LIMIT",
    "UNITS",
    "AccuracySource",
    "ClassWeighting",
    "ClassWeights",
    "FirstObservation",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OptimizerSettings",
    "PositiveFloat",
    "PositiveInt",
    "Reduction",
    "RuntimeSettings",
    "Schedule",
    "Seed",
    "SegmentationOptions",
    "SegmentationSettings",
    "Strict",
    "Subsample",
    "SubsampleMode",
    "TrackConfig",
    "TrackSettings",
    "TrainConfig",
    "TrainSettings",
    "Unit",
    "UnitFraction",
    "check_subsample",
]


class Strict(BaseModel):
    """The base of every settings model: unknown keys are errors, no coercion, frozen, finite numbers."""

    # allow_inf_nan: TOML has inf and nan literals; no setting of a config means them (lr = inf diverges)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class RuntimeSettings(Strict):
    """The base of the settings the library's functions take as objects (:class:`TrainConfig`,
    :class:`SegmentationOptions`): built from keyword arguments, numbers converted (``lr=1`` is ``1.0``),
    attributes assignable, and a bad value raises :class:`~forgetting.exceptions.ConfigError` whose
    message names the key (``train.lr``) and the allowed values."""

    model_config = ConfigDict(strict=False, frozen=False)
    #: The prefix of the key paths in error messages (``"train"``: ``train.lr``).
    error_prefix: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation_error(
                    exc,
                    data,
                    type(self).__name__,
                    type(self),
                    what="settings",
                    prefix=type(self).error_prefix,
                )
            ) from None


# --------------------------------------------------------------------------------------------------------
# Value types

#: Seeds are stored as SQLite integers (signed 64-bit) and feed numpy's SeedSequence (non-negative).
SEED_MAX = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
#: A fraction in ``(0, 1]`` (a target accuracy, the share of pixels ``top-q`` averages).
UnitFraction = Annotated[float, Field(gt=0, le=1)]

Optimizer = Literal["adam", "sgd"]
Schedule = Literal["constant", "plateau", "cosine"]
AccuracySource = Literal["running", "eval"]
#: Class-weighting schemes of :func:`forgetting.segmentation.training.class_weights_from_masks`.
ClassWeighting = Literal["median", "balanced", "sqrt", "none"]
#: A class-weighting scheme or one non-negative weight per class.
ClassWeights = ClassWeighting | list[NonNegativeFloat]
#: How pixel scores become one score per section (see :mod:`forgetting.segmentation.active`).
Reduction = Literal["mean", "sum", "top-q", "class-balanced"]
#: What the pool is observed after: every ``every`` epochs or optimizer steps.
Unit = Literal["epoch", "step"]
#: How a subsampled observation pass picks its rows (see :class:`TrackConfig`).
SubsampleMode = Literal["rotating", "fixed", "unstable"]
#: How the first observation of an element counts: ``"exact"`` (it only initialises) or ``"reference"``
#: (as the authors' code, against an implicit earlier prediction of class 0 that was incorrect).
FirstObservation = Literal["exact", "reference"]
#: A subsample of the pool per observation pass: a fraction in ``(0, 1]``, a count ``>= 1``, or ``"all"``.
Subsample = float | int | Literal["all"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
ACCURACY_SOURCES: tuple[str, ...] = get_args(AccuracySource)
CLASS_WEIGHTING: tuple[str, ...] = get_args(ClassWeighting)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
UNITS: tuple[str, ...] = get_args(Unit)
SUBSAMPLE_MODES: tuple[str, ...] = get_args(SubsampleMode)
FIRST_OBSERVATIONS: tuple[str, ...] = get_args(FirstObservation)

#: The hard safety limit of training with ``max_epochs=None`` (no cap, as in the authors' code, which trains
#: ``while acc < target``): past this many epochs :func:`~forgetting.training.fit` raises
#: :class:`~forgetting.exceptions.TrainingLimitError`.
UNCAPPED_EPOCH_LIMIT = 1000


# --------------------------------------------------------------------------------------------------------
# Training


class OptimizerSettings(Strict):
    """How the optimizer steps: what every trainer of the project takes (the built-in :func:`fit`, the
    segmentation trainers of ``forgetting maps``, the profile trainer), with the experiments' defaults.

    Attributes:
        optimizer: ``adam`` or ``sgd`` (with ``momentum``, see :class:`TrainConfig`).
        lr: the learning rate, finite and ``> 0``.
        weight_decay: L2 weight decay, ``>= 0``.
        schedule: ``constant``, ``plateau`` (halve the rate when the epoch's training loss has not improved
            for 3 epochs) or ``cosine`` (anneal over the epochs).
        batch_size: samples per optimizer step.
    """

    optimizer: Optimizer = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    schedule: Schedule = "constant"
    batch_size: PositiveInt = 64

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`TrainConfig` of these settings: every field that :class:`TrainConfig` has, then
        ``overrides`` (e.g. ``target_accuracy=None``)."""
        values = self.model_dump(include=set(TrainConfig.model_fields))
        return TrainConfig(**{**values, **overrides})


class _FitSettings(OptimizerSettings):
    """The fields of :func:`fit` that its runtime and TOML forms spell alike."""

    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    accuracy_source: AccuracySource = "running"
    min_epochs: PositiveInt = 1
    epochs: PositiveInt | None = None
    augment: bool = False
    crop_padding: NonNegativeInt = 2
    flip: bool = True


class TrainConfig(_FitSettings, RuntimeSettings):
    """How to train one model (what :func:`forgetting.training.fit` runs).

    Stopping: with ``epochs`` set, exactly that many epochs. Otherwise train until the training accuracy
    reaches ``target_accuracy`` (after at least ``min_epochs``), and never beyond ``max_epochs``.
    ``max_epochs=None`` removes the cap, as in the authors' code: training then runs until the target, and
    raises :class:`~forgetting.exceptions.TrainingLimitError` after :data:`UNCAPPED_EPOCH_LIMIT` epochs
    rather than loop forever.
    ``accuracy_source="running"`` uses the running accuracy of the epoch (free); ``"eval"`` runs an eval-mode
    pass over the training set after each epoch (exact, costs a pass).

    Learning-rate schedules that work when the epoch count is unknown: ``constant`` and ``plateau``
    (halve the rate when the epoch's training loss has not improved for 3 epochs). ``cosine`` anneals over
    ``epochs`` (or ``max_epochs`` when training to a target accuracy; not available without a cap).
    ``augment`` applies random crops (``crop_padding`` pixels of zero padding) and, with ``flip``, random
    left-right flips to each training batch.

    Raises:
        ConfigError: a bad or unknown key, naming it (``train.lr``) and the allowed values.
    """

    error_prefix = "train"

    target_accuracy: UnitFraction | None = 0.92
    max_epochs: PositiveInt | None = 100

    @model_validator(mode="after")
    def _stopping(self) -> TrainConfig:
        if self.epochs is not None:
            return self
        if self.target_accuracy is None:
            raise ValueError("set either `epochs` (fixed) or `target_accuracy` (with max_epochs)")
        if self.max_epochs is None:
            if self.schedule == "cosine":
                raise ValueError(
                    "schedule 'cosine' anneals over a known number of epochs; with max_epochs = "
                    "none choose 'constant' or 'plateau', or set max_epochs"
                )
        elif self.min_epochs > self.max_epochs:
            raise ValueError(
                f"need 1 <= min_epochs <= max_epochs, got {self.min_epochs} and {self.max_epochs}"
            )
        return self

    @property
    def epoch_limit(self) -> int:
        """The most epochs a fit can run (:data:`UNCAPPED_EPOCH_LIMIT` without a cap)."""
        if self.epochs is not None:
            return self.epochs
        return self.max_epochs if self.max_epochs is not None else UNCAPPED_EPOCH_LIMIT


class TrainSettings(_FitSettings):
    """How each round's model is trained: section ``[train]`` of an experiment config and of a labelling
    project. The fields of :class:`TrainConfig`, as TOML spells them (``max_epochs = "none"``: no cap; TOML
    has no null), plus ``function``. :meth:`to_train_config` converts."""

    target_accuracy: UnitFraction = 0.92
    max_epochs: PositiveInt | Literal["none"] = 100
    #: the import path ``"pkg.mod:fn"`` of a training function ``(model, labeled, observer)``; ``None``: the
    #: built-in ``fit`` with the settings above
    function: str | None = None

    @model_validator(mode="after")
    def _epochs_order(self) -> TrainSettings:
        if self.max_epochs != "none" and self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})")
        return self

    def to_train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` of these settings (``max_epochs = "none"`` becomes ``None``: no cap, with
        the hard safety limit :data:`UNCAPPED_EPOCH_LIMIT`); ``function`` is the loop's, not ``fit``'s."""
        return self.train_config(max_epochs=None if self.max_epochs == "none" else self.max_epochs)


# --------------------------------------------------------------------------------------------------------
# Segmentation


class _SegmentationFields(Strict):
    """The fields of a segmentation task; the runtime and TOML forms narrow ``ignore_index``."""

    ignore_index: int | Literal["dataset", "none"] | None = None
    reduction: Reduction = "mean"
    top_q: UnitFraction = 0.1
    class_weights: ClassWeights = "median"


class SegmentationOptions(_SegmentationFields, RuntimeSettings):
    """What a segmentation experiment adds to :class:`~forgetting.loop.LoopConfig` (the options of a
    :class:`~forgetting.segmentation.task.SegmentationTask`).

    Attributes:
        ignore_index: mask value that adds no loss, no metric and no event (padding such as 255);
            ``None``: every value is a class.
        reduction: how pixel scores become one score per section: one of :data:`REDUCTIONS`.
        top_q: the fraction of a section's pixels that ``reduction = "top-q"`` averages, in ``(0, 1]``.
        class_weights: cross-entropy class weights, recomputed each round from the labeled masks: a scheme of
            :data:`CLASS_WEIGHTING` or one weight per class.

    Raises:
        ConfigError: a bad or unknown key, naming it (``segmentation.top_q``) and the allowed values.
    """

    error_prefix = "segmentation"

    ignore_index: int | None = None


class SegmentationSettings(_SegmentationFields):
    """Section ``[segmentation]`` of an experiment config: :class:`SegmentationOptions` as TOML spells them.

    Attributes:
        ignore_index: mask value that counts nothing; ``"dataset"`` (default) takes the dataset's own (255
            for the seismic datasets), ``"none"`` makes every value a class.
        reduction: pixel scores -> one score per section: ``mean``, ``sum``, ``top-q``, ``class-balanced``.
        top_q: the fraction of pixels ``top-q`` averages, in ``(0, 1]``.
        class_weights: ``median``, ``balanced``, ``sqrt``, ``none``, or one weight per class.
    """

    ignore_index: int | Literal["dataset", "none"] = "dataset"

    def to_options(self, *, dataset_ignore_index: int | None = None) -> SegmentationOptions:
        """The :class:`SegmentationOptions` of these settings.

        Args:
            dataset_ignore_index: the dataset's own ignore index (used by ``ignore_index = "dataset"``).
        """
        ignore: int | None
        if self.ignore_index == "dataset":
            ignore = dataset_ignore_index
        elif self.ignore_index == "none":
            ignore = None
        else:
            ignore = self.ignore_index
        fields: Mapping[str, Any] = self.model_dump(exclude={"ignore_index"})
        return SegmentationOptions(ignore_index=ignore, **fields)


# --------------------------------------------------------------------------------------------------------
# Tracking

#: Named observation schedules of the active-learning loop (``TrackConfig.preset(name)``, ``[track] preset``):
#: values of ``unit``, ``every``, ``subsample`` (``None``: every row) and ``subsample_mode``.
TRACK_PRESETS: dict[str, dict[str, Any]] = {
    # The FALSE/GauSS papers' protocol: the whole pool after every epoch.
    "paper-exact": {"unit": "epoch", "every": 1, "subsample": None, "subsample_mode": "rotating"},
    # The cheap schedule of issue 12 (benchmarks/dynamics_cost.py): a quarter of the pool after every epoch,
    # the rows that changed their prediction at their latest observation first.
    "unstable-25": {"unit": "epoch", "every": 1, "subsample": 0.25, "subsample_mode": "unstable"},
}
#: The preset that ``TrackConfig()`` and an experiment config without tracking keys use.
DEFAULT_TRACK_PRESET = "paper-exact"


def check_subsample(v: Subsample | None) -> Subsample | None:
    """``v`` if it is a valid subsample (a fraction in ``(0, 1]``, a count ``>= 1``, ``"all"`` or ``None``);
    ``ValueError`` otherwise."""
    if isinstance(v, float) and not 0.0 < v <= 1.0:
        raise ValueError(f"a fraction must lie in (0, 1], got {v}")
    if isinstance(v, int) and v < 1:
        raise ValueError(f"a sample count must be >= 1, got {v}")
    return v


class _TrackFields(Strict):
    """The fields of the pool's tracking; the runtime and TOML forms narrow ``subsample``."""

    enabled: bool | None = None
    unit: Unit = "epoch"
    every: PositiveInt = 1
    subsample: Subsample | None = None
    subsample_mode: SubsampleMode = "rotating"
    first_observation: FirstObservation = "exact"


class TrackConfig(_TrackFields, RuntimeSettings):
    """When and what to observe while a round trains (what :class:`~forgetting.loop.LoopConfig` runs).

    The pool is observed per element: per sample for classification, per pixel for segmentation (one
    :class:`~forgetting.events.EventTracker` of shape ``(P, H, W)``).

    The default observes the whole pool after every epoch, as the FALSE/GauSS papers do (preset
    ``"paper-exact"``). ``TrackConfig.preset("unstable-25")`` observes a quarter of the pool after every
    epoch, the rows whose prediction changed at their latest observation first: a quarter of the tracking
    time; in ``benchmarks/dynamics_cost.py`` it met the rule (OOD AUBC within 0.5 points at the 95 % lower
    bound) in one run and missed it in another (docs/concepts/cheap-dynamics.md), so it is not the default.

    Attributes:
        enabled: ``None`` tracks the pool only when the strategy needs dynamics; ``True`` always (for
            analysis); ``False`` never (a strategy that needs dynamics then fails with a clear error).
        unit, every: observe after every ``every`` epochs or optimizer steps (a user's training function
            reports them through ``observer.epoch_end`` / ``observer.step_end``).
        subsample: observe a seeded subset of the pool per pass: a fraction in (0, 1] or a count.
        subsample_mode: ``rotating`` draws a new subset each pass; ``fixed`` keeps one subset per round;
            ``unstable`` spends the same budget on the rows whose prediction changed at their latest
            observation first (see :meth:`forgetting.observe.ObservationCallback.rows_for_pass`).
        first_observation: ``"exact"`` (default) or ``"reference"``, a compatibility mode that counts the
            first observation as the authors' code does (see :class:`~forgetting.events.EventTracker`).

    Raises:
        ConfigError: a bad or unknown key, naming it (``track.every``) and the allowed values.
    """

    error_prefix = "track"

    subsample: float | int | None = None

    @classmethod
    def preset(cls, name: str, *, enabled: bool | None = None) -> TrackConfig:
        """A named schedule of :data:`TRACK_PRESETS`: ``"paper-exact"`` (the whole pool after every epoch;
        the default) or ``"unstable-25"`` (a quarter of the pool, unstable rows first)."""
        check_choice("track preset", name, tuple(TRACK_PRESETS))
        return cls(enabled=enabled, **TRACK_PRESETS[name])


class TrackSettings(_TrackFields):
    """When the unlabeled pool is observed during training: section ``[track]`` of an experiment config and
    of a labelling project (:class:`TrackConfig` as TOML spells it: ``subsample = "all"`` for every row).

    The defaults are the preset ``"paper-exact"`` (the whole pool after every epoch). The input key
    ``preset`` (a name of :data:`TRACK_PRESETS`, e.g. ``"unstable-25"``) stands for its unit, every,
    subsample and subsample_mode, which must then be left out; it is not stored, so a preset and its
    spelled-out values are the same experiment. With ``subsample = "all"`` the mode means nothing and is
    stored as ``"rotating"``, so such experiments keep one id whatever the mode's default.

    ``first_observation = "reference"`` is a compatibility mode: the pool's first observation counts as in
    the authors' code (a switch whenever the first prediction is not class 0; see
    ``forgetting.events.EventTracker``), for comparisons with numbers produced by that code. It is left out
    of the experiment id at its default (``"exact"``).
    """

    #: Input keys accepted besides the fields (consumed by the preset validator), for error messages.
    extra_input_keys: ClassVar[tuple[str, ...]] = ("preset",)

    subsample: Subsample = "all"

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("subsample") == "all" and "preset" not in data:
            return {**data, "subsample_mode": "rotating"}
        if not isinstance(data, Mapping) or "preset" not in data:
            return data
        data = dict(data)
        name = data.pop("preset")
        if not isinstance(name, str) or name not in TRACK_PRESETS:
            allowed = ", ".join(map(repr, TRACK_PRESETS))
            raise ValueError(f"unknown preset {name!r}; allowed values: {allowed}")
        values = TRACK_PRESETS[name]
        clash = [k for k in values if k in data]
        if clash:
            raise ValueError(
                f"preset {name!r} sets {', '.join(values)}; drop {', '.join(clash)} or drop the preset"
            )
        data.update({k: "all" if v is None else v for k, v in values.items()})
        return data

    @field_validator("subsample")
    @classmethod
    def _subsample_range(cls, v: Subsample) -> Subsample:
        check_subsample(v)
        return v

    def to_track_config(self) -> TrackConfig:
        """The :class:`TrackConfig` of these settings (``subsample = "all"`` becomes ``None``)."""
        track = self.model_dump()
        if track["subsample"] == "all":
            track["subsample"] = None
        return TrackConfig(**track)
