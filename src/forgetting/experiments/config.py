"""Experiment configuration: a TOML file, validated by pydantic, expanded into a grid of experiments.

A config file has these parts (every key is optional; unknown keys are errors)::

    name = "quickstart"                 # run name; the default output directory is runs/<name>
    seeds = [0, 1, 2]                   # sweep
    dataset = "mnist-5k"                # sweep: a name or a list of names
    model = "small-cnn"                 # sweep
    strategy = ["random", "switch"]     # sweep
    eval_sets = ["test", "digits", "gaussian_noise-3"]   # or a table: one list per dataset name
    device = "cuda"                     # run settings (device, eval_batch_size, jobs, backend, [ray]): not
    jobs = 2                            # part of an experiment's identity; `forgetting run --jobs`,
    backend = "process"                 # `--backend` and `--address` override them

    [al]      initial_size, initial_selection, initial_seed, query_size (sweep), rounds, pool_subsample,
              on_exhausted, mc_samples
    [train]   optimizer, lr (sweep), weight_decay, momentum, schedule, batch_size, target_accuracy,
              accuracy_source, min_epochs, max_epochs, epochs, augment, crop_padding, flip
    [track]   enabled, unit (sweep), every (sweep), subsample (sweep), subsample_mode, preset,
              first_observation
    [model_options]      options for every model, and/or one table per model name:
                         [model_options.resnet18] width = 16
    [strategy_options]   the same, per strategy name
    [data]    root, seed, train_limit, eval_limit, options (the same, per dataset name)
    [segmentation]  ignore_index, reduction (sweep), top_q, class_weights: segmentation datasets only
    [ray]     address, num_cpus, num_gpus, max_retries, runtime_env, local_num_cpus (see RaySettings)

Sweep fields (:data:`SWEEP_FIELDS`) take a single value or a list; the grid is the Cartesian product of
every list. Each point is an :class:`ExperimentSpec`, a fully resolved experiment with a stable id: a short
hash of its canonical JSON (run settings such as ``device`` and the run ``name`` are not part of it, so a
renamed config still resumes the same experiments).

``backend`` chooses where experiments run: ``local`` (this process, one after the other), ``process`` (a pool
of ``jobs`` spawned processes) or ``ray`` (one Ray task per experiment, see :class:`RaySettings`). Without it,
``jobs > 1`` means ``process`` and anything else ``local``.

``track.subsample`` takes a fraction in ``(0, 1]``, a sample count ``>= 1``, or ``"all"`` (TOML has no
null). The default tracking observes the whole pool after every epoch, as the FALSE/GauSS papers do;
``track.preset = "unstable-25"`` (instead of unit, every, subsample and subsample_mode) observes a quarter
of the pool per epoch, unstable rows first (see ``forgetting.observe.TRACK_PRESETS`` and
``benchmarks/dynamics_cost.py``). ``train.epochs`` set
means a fixed number of epochs; otherwise training stops at ``train.target_accuracy``, after at most
``train.max_epochs`` epochs; ``max_epochs = "none"`` removes that cap, as in the authors' code (a round that
has not reached the target after the hard safety limit ``forgetting.training.UNCAPPED_EPOCH_LIMIT`` = 1000
epochs fails with ``TrainingLimitError``).

A segmentation dataset (``seismic-synthetic``, ``f3``, ``arrays`` with masks) runs the same loop on sections:
the pool is tracked per pixel and pixel scores are reduced to one score per section
(``segmentation.reduction``: ``mean``, ``sum``, ``top-q`` or ``class-balanced``, see
:mod:`forgetting.segmentation.active`); rounds record mIoU and per-class IoU. Without a ``[segmentation]``
section a segmentation experiment uses its defaults and the dataset's own ignore index.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from forgetting._config import read_config_file, validate_toml
from forgetting.exceptions import ConfigError, ForgettingError, UnknownNameError
from forgetting.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Reduction,
    Seed,
    SegmentationSettings,
    Subsample,
    TrackSettings,
    TrainSettings,
    Unit,
    check_subsample,
)
from forgetting.settings import Strict as _Strict

__all__ = [
    "BACKENDS",
    "SWEEP_FIELDS",
    "ALSettings",
    "DataSettings",
    "ExperimentConfig",
    "ExperimentSpec",
    "RaySettings",
    "SegmentationSettings",
    "TrackSettings",
    "TrainSettings",
    "expand_grid",
    "load_config",
    "parse_config",
    "quickstart_config",
]

#: Fields that take a list of values and expand to a grid (dotted paths into the config).
SWEEP_FIELDS: tuple[str, ...] = (
    "dataset",
    "model",
    "strategy",
    "seeds",
    "al.query_size",
    "train.lr",
    "track.every",
    "track.unit",
    "track.subsample",
    "segmentation.reduction",
)

#: Where experiments run: this process, a local process pool, or Ray tasks.
BACKENDS: tuple[str, ...] = ("local", "process", "ray")
Backend = Literal["local", "process", "ray"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _unique(values: list[Any]) -> list[Any]:
    if len(values) == 0:
        raise ValueError("must not be empty")
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v!r}")
        seen.append(v)
    return values


class ALSettings(_Strict):
    """The active-learning protocol of one experiment (section ``[al]``).

    ``initial_seed`` (default unset: the experiment's seed draws its own initial set) draws one initial
    labeled set from this seed for every experiment seed, as the authors' code does (``init_seed``); with
    ``initial_selection = "uniform"`` that is their protocol. Left out of the experiment id when unset.
    """

    initial_size: PositiveInt = 20
    initial_selection: Literal["stratified", "uniform"] = "stratified"
    initial_seed: NonNegativeInt | None = None
    query_size: PositiveInt = 20
    rounds: NonNegativeInt = 8
    pool_subsample: PositiveInt | None = None
    on_exhausted: Literal["error", "partial"] = "partial"
    mc_samples: PositiveInt = 20
    #: the model layer whose output is the embedding (coreset, badge); ``None``: ``embed`` / ``features``
    embedding_layer: str | None = None


class DataSettings(_Strict):
    """Where data comes from and how it is cut (section ``[data]``).

    ``seed`` fixes the dataset split, the eval-set corruptions and the limits; it is the same for every
    experiment seed, so all experiments are evaluated on the same data. ``train_limit`` keeps a seeded random
    subset of the training split (the pool); ``eval_limit`` caps every eval set.
    """

    root: str | None = None
    seed: Seed = 0
    train_limit: PositiveInt | None = None
    eval_limit: PositiveInt | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class RaySettings(_Strict):
    """How the ``ray`` backend runs (section ``[ray]``); a run setting, not part of any experiment's id.

    Attributes:
        address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.5:6379"``). ``None``
            starts a local Ray instance for the run (and stops it at the end). ``--address`` overrides it.
        num_cpus: CPUs declared per experiment task (also its torch thread count); may be fractional.
        num_gpus: GPUs declared per experiment task; ``0`` runs on CPU, ``1`` gives each task a GPU,
            ``0.25`` packs four tasks per GPU. A task sees only the GPUs Ray assigned to it.
        max_retries: how often a failed task (an exception or a dead worker) is retried. A retry resumes
            after the rounds that already reached the driver, so nothing is computed twice.
        runtime_env: a Ray runtime environment applied to every task, e.g.
            ``{env_vars = {OMP_NUM_THREADS = "1"}}`` or ``{pip = ["forgetting[ray]"]}`` on a cluster whose
            nodes lack the package.
        local_num_cpus: CPUs of the local instance started when there is no ``address`` (default: all of
            this machine); bounds how many tasks run at once.
    """

    address: str | None = None
    num_cpus: PositiveFloat = 1.0
    num_gpus: NonNegativeFloat = 0.0
    max_retries: NonNegativeInt = 2
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    local_num_cpus: PositiveInt | None = None


class _ALSection(ALSettings):
    query_size: Annotated[list[PositiveInt], BeforeValidator(_as_list)] = Field(default=[20])  # type: ignore[assignment]

    @field_validator("query_size")
    @classmethod
    def _unique_values(cls, v: list[int]) -> list[int]:
        return _unique(v)


class _TrainSection(TrainSettings):
    lr: Annotated[list[PositiveFloat], BeforeValidator(_as_list)] = Field(default=[1e-3])  # type: ignore[assignment]

    @field_validator("lr")
    @classmethod
    def _unique_values(cls, v: list[float]) -> list[float]:
        return _unique(v)


class _TrackSection(TrackSettings):
    unit: Annotated[list[Unit], BeforeValidator(_as_list)] = Field(default=["epoch"])  # type: ignore[assignment]
    every: Annotated[list[PositiveInt], BeforeValidator(_as_list)] = Field(default=[1])  # type: ignore[assignment]
    subsample: Annotated[list[Subsample], BeforeValidator(_as_list)] = Field(default=["all"])  # type: ignore[assignment]

    @field_validator("unit", "every")
    @classmethod
    def _unique_values(cls, v: list[Any]) -> list[Any]:
        return _unique(v)

    @field_validator("subsample")
    @classmethod
    def _subsample_range(cls, v: list[Subsample]) -> list[Subsample]:  # type: ignore[override]
        return _unique([check_subsample(x) for x in v])


class _SegmentationSection(SegmentationSettings):
    reduction: Annotated[list[Reduction], BeforeValidator(_as_list)] = Field(default=["mean"])  # type: ignore[assignment]  # a grid axis: a list of the base section's values

    @field_validator("reduction")
    @classmethod
    def _unique_values(cls, v: list[str]) -> list[str]:
        return _unique(v)


class ExperimentConfig(_Strict):
    """A whole config file: settings plus sweep lists. :func:`expand_grid` turns it into experiments."""

    name: str = "experiment"
    seeds: Annotated[list[Seed], BeforeValidator(_as_list)] = Field(default=[0])
    dataset: Annotated[list[str], BeforeValidator(_as_list)] = Field(default=["mnist-5k"])
    model: Annotated[list[str], BeforeValidator(_as_list)] = Field(default=["small-cnn"])
    strategy: Annotated[list[str], BeforeValidator(_as_list)] = Field(default=["random"])
    eval_sets: list[str] | dict[str, list[str]] = Field(default=["test"])
    device: str | None = None
    eval_batch_size: PositiveInt | None = None
    jobs: PositiveInt | None = None
    backend: Backend | None = None
    ray: RaySettings = Field(default_factory=RaySettings)
    al: _ALSection = Field(default_factory=_ALSection)
    train: _TrainSection = Field(default_factory=_TrainSection)
    track: _TrackSection = Field(default_factory=_TrackSection)
    data: DataSettings = Field(default_factory=DataSettings)
    segmentation: _SegmentationSection | None = None
    model_options: dict[str, Any] = Field(default_factory=dict)
    strategy_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_a_filename(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not usable as a directory name; use letters, digits, '.', '_' and '-'"
            )
        return v

    @field_validator("seeds", "dataset", "model", "strategy")
    @classmethod
    def _unique_values(cls, v: list[Any]) -> list[Any]:
        return _unique(v)

    def eval_sets_for(self, dataset: str) -> list[str]:
        """The eval-set names of ``dataset`` (``["test"]`` when a per-dataset table leaves it out)."""
        if isinstance(self.eval_sets, dict):
            return list(self.eval_sets.get(dataset, ["test"]))
        return list(self.eval_sets)

    def sweep_sizes(self) -> dict[str, int]:
        """Number of values of each sweep field (see :data:`SWEEP_FIELDS`)."""
        return {path: len(_get_path(self, path)) for path in SWEEP_FIELDS}


def _get_path(obj: Any, dotted: str) -> Any:
    """The value at a dotted path; ``[None]`` below an unset section (one value: no sweep)."""
    for part in dotted.split("."):
        if obj is None:
            return [None]
        obj = getattr(obj, part)
    return obj


_RUN_SETTINGS = frozenset({"name", "variant", "device", "eval_batch_size"})
#: Keys added after experiment ids were first published: (section, key, default). Each is left out of
#: :meth:`ExperimentSpec.canonical_json` at its default, so existing experiments keep their ids.
_ID_OPTIONAL_KEYS: tuple[tuple[str, str, Any], ...] = (
    ("al", "initial_seed", None),
    ("al", "embedding_layer", None),
    ("train", "function", None),
    ("track", "first_observation", "exact"),
)


class ExperimentSpec(_Strict):
    """One fully resolved experiment: a point of the grid.

    Attributes:
        name: the run (config) name. Not part of :attr:`id`.
        variant: the non-default sweep values that tell this experiment apart from its siblings with the
            same dataset/model/strategy/seed, e.g. ``"train.lr=0.01"``; empty when nothing else is swept. Not
            part of :attr:`id`.
        device, eval_batch_size: run settings. Not part of :attr:`id`.
    """

    name: str
    variant: str = ""
    dataset: str
    model: str
    model_options: dict[str, Any] = Field(default_factory=dict)
    strategy: str
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    seed: int
    eval_sets: tuple[str, ...] = ("test",)
    al: ALSettings = Field(default_factory=ALSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    track: TrackSettings = Field(default_factory=TrackSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    segmentation: SegmentationSettings | None = None
    device: str | None = None
    eval_batch_size: PositiveInt | None = None

    def canonical_json(self) -> str:
        """JSON of every field that determines the results, keys sorted (the input of :attr:`id`).

        ``segmentation`` is left out when unset, and the keys of :data:`_ID_OPTIONAL_KEYS` at their defaults,
        so experiments that do not use them keep the ids they had before they existed.
        """
        exclude: dict[str, Any] = dict.fromkeys(_RUN_SETTINGS, True)
        if self.segmentation is None:
            exclude["segmentation"] = True
        for section, key, default in _ID_OPTIONAL_KEYS:
            if getattr(getattr(self, section), key) == default:
                exclude.setdefault(section, set()).add(key)
        payload = self.model_dump(mode="json", exclude=exclude)
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`canonical_json`; stable across processes and versions."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """``dataset/model/strategy/seedN`` plus the variant, for logs and progress bars."""
        base = f"{self.dataset}/{self.model}/{self.strategy}/seed{self.seed}"
        return f"{base} [{self.variant}]" if self.variant else base

    @property
    def total_rounds(self) -> int:
        """Rounds including the final evaluation-only round: ``al.rounds + 1`` models are trained."""
        return self.al.rounds + 1

    def to_json(self) -> str:
        """Full JSON (run settings included), as stored in the results database."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["eval_sets"] = tuple(data.get("eval_sets", ("test",)))
        return cls.model_validate(data, strict=False)

    def loop_config(self) -> Any:
        """The ``forgetting.loop.LoopConfig`` of this experiment."""
        from forgetting.loop import LoopConfig

        return LoopConfig(
            model=self.model,
            model_options=dict(self.model_options),
            embedding_layer=self.al.embedding_layer,
            strategy=self.strategy,
            strategy_options=dict(self.strategy_options),
            initial_size=self.al.initial_size,
            initial_selection=self.al.initial_selection,
            initial_seed=self.al.initial_seed,
            query_size=self.al.query_size,
            rounds=self.al.rounds,
            seed=self.seed,
            train=self.train.to_train_config(),
            train_fn=self.train.function,
            track=self.track.to_track_config(),
            mc_samples=self.al.mc_samples,
            pool_subsample=self.al.pool_subsample,
            on_exhausted=self.al.on_exhausted,
            device=self.device,
            eval_batch_size=self.eval_batch_size,
        )

    def task_options(self, *, dataset_ignore_index: int | None = None) -> dict[str, Any]:
        """The options of this experiment's task from its ``[segmentation]`` section (empty without one).

        Args:
            dataset_ignore_index: the dataset's own ignore index (used by ``ignore_index = "dataset"``).
        """
        seg = self.segmentation or SegmentationSettings()
        return seg.to_options(dataset_ignore_index=dataset_ignore_index).model_dump()


# --------------------------------------------------------------------------------------------------------
# Loading and error messages


def load_config(path: str | Path, *, validate_names: bool = True) -> ExperimentConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or a key or value is bad. The message names the
            key path (``train.optimizer``), the bad value and the allowed keys or values.
    """
    return parse_config(read_config_file(path), source=str(path), validate_names=validate_names)


def quickstart_config(*, validate_names: bool = True) -> ExperimentConfig:
    """The built-in quickstart config (``forgetting/experiments/quickstart.toml``)."""
    text = resources.files("forgetting.experiments").joinpath("quickstart.toml").read_text(encoding="utf-8")
    return parse_config(text, source="<built-in quickstart.toml>", validate_names=validate_names)


def parse_config(
    text: str | Mapping[str, Any], *, source: str = "<config>", validate_names: bool = True
) -> ExperimentConfig:
    """Validate TOML text (or an already parsed mapping) into an :class:`ExperimentConfig`.

    With ``validate_names`` (the default) dataset, model, strategy and eval-set names are checked against
    the registries, and per-name option tables against the names they refer to.
    """
    config = validate_toml(ExperimentConfig, text, source=source)
    if validate_names:
        _validate_names(config, source)
    return config


def _registry(kind: str) -> list[str]:
    """Registered names of ``kind`` (``dataset``, ``model``, ``strategy``)."""
    if kind == "dataset":
        from forgetting.data import list_datasets

        return list(list_datasets())
    if kind == "model":
        from forgetting.models import list_models

        return list(list_models())
    if kind == "strategy":
        from forgetting.strategies import list_strategies

        return list(list_strategies())
    raise ForgettingError(f"unknown registry kind {kind!r}")  # an internal call, never user input


def _check_names(values: Sequence[str], known: Sequence[str], key: str, kind: str, source: str) -> None:
    for v in values:
        if v not in known:
            raise UnknownNameError(
                f"{source}: `{key}` = {v!r} is not a known {kind}; known {kind} names: {', '.join(known)}"
            )


def _validate_names(config: ExperimentConfig, source: str) -> None:
    from forgetting.models import is_import_path, validate_model_ref

    datasets = _registry("dataset")
    imported = [m for m in config.model if is_import_path(m)]
    models = [*_registry("model"), *imported]
    strategies = _registry("strategy")
    _check_names(config.dataset, datasets, "dataset", "dataset", source)
    _check_names(config.model, models, "model", "model", source)
    for path in imported:
        try:
            validate_model_ref(path)
        except ConfigError as exc:
            raise ConfigError(f"{source}: `model`: {exc}") from None
    if config.train.function is not None:
        from forgetting.models import import_object

        try:
            fn = import_object(config.train.function, what="train.function")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if not callable(fn):
            raise ConfigError(f"{source}: `train.function` = {config.train.function!r} is not callable")
    _check_names(config.strategy, strategies, "strategy", "strategy", source)
    from forgetting.data import parse_eval_set_name

    if isinstance(config.eval_sets, dict):
        _check_names(list(config.eval_sets), config.dataset, "eval_sets", "dataset of this config", source)
        per_dataset = list(config.eval_sets.items())
    else:
        per_dataset = [("", config.eval_sets)]
    for ds, names in per_dataset:
        key = f"eval_sets.{ds}" if ds else "eval_sets"
        for v in names:
            try:
                parse_eval_set_name(v)
            except UnknownNameError as exc:
                raise UnknownNameError(f"{source}: `{key}` holds {v!r}: {exc}") from None
            except ConfigError as exc:
                raise ConfigError(f"{source}: `{key}` holds {v!r}: {exc}") from None
    for key, known in (
        ("model_options", models),
        ("strategy_options", strategies),
        ("data.options", datasets),
    ):
        table = (
            config.model_options
            if key == "model_options"
            else (config.strategy_options if key == "strategy_options" else config.data.options)
        )
        for k, v in table.items():
            if isinstance(v, dict) and k not in known:
                raise UnknownNameError(
                    f"{source}: `{key}.{k}` is a table, so it must be named after a "
                    f"{key.split('_')[0].split('.')[-1]}; known names: {', '.join(known)}"
                )
    _validate_options(config, source)


def _validate_options(config: ExperimentConfig, source: str) -> None:
    """Check model and strategy options by asking the registries (unknown options, bad values)."""
    from forgetting.models import is_import_path, validate_options
    from forgetting.strategies import Input, get_strategy

    resolved: dict[str, dict[str, Any]] = {}
    for model in config.model:
        if is_import_path(model):  # a user factory's options are its own keyword arguments
            continue
        try:
            resolved[model] = validate_options(model, _options_for(config.model_options, model))
        except ConfigError as exc:
            raise ConfigError(f"{source}: `model_options` for model {model!r}: {exc}") from None
    for strategy in config.strategy:
        try:
            built = get_strategy(strategy, **_options_for(config.strategy_options, strategy))
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{source}: `strategy_options` for strategy {strategy!r}: {exc}") from None
        if Input.MC_PROBS in built.requires:
            for model, options in resolved.items():
                if not float(options.get("dropout", 0.0)) > 0.0:
                    raise ConfigError(
                        f"{source}: strategy {strategy!r} needs MC dropout, but model {model!r} has dropout "
                        f"{options.get('dropout', 0.0)}; set `model_options.{model}.dropout` to a value in "
                        "(0, 1), e.g. 0.2 (applies to every strategy of that model, so comparisons stay fair)"
                    )


# --------------------------------------------------------------------------------------------------------
# Grid expansion


def _options_for(table: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Common options (non-table values) overridden by the table named ``name``."""
    common = {k: v for k, v in table.items() if not isinstance(v, dict)}
    specific = table.get(name, {})
    return {**common, **(specific if isinstance(specific, dict) else {})}


def expand_grid(config: ExperimentConfig) -> list[ExperimentSpec]:
    """Every experiment of ``config``: the Cartesian product of the sweep fields.

    Order: dataset, model, the other sweeps (query size, lr, track unit/every/subsample, segmentation
    reduction), seed, strategy, so that an interrupted run has every strategy of the first seeds.
    """
    specs: list[ExperimentSpec] = []
    base_al = config.al.model_dump(exclude={"query_size"})
    base_train = config.train.model_dump(exclude={"lr"})
    base_track = config.track.model_dump(exclude={"unit", "every", "subsample"})
    other: dict[str, list[Any]] = {
        "al.query_size": config.al.query_size,
        "train.lr": config.train.lr,
        "track.unit": config.track.unit,
        "track.every": config.track.every,
        "track.subsample": config.track.subsample,
        "segmentation.reduction": config.segmentation.reduction if config.segmentation else [None],
    }
    base_seg = config.segmentation.model_dump(exclude={"reduction"}) if config.segmentation else None
    varied = [k for k, v in other.items() if len(v) > 1]
    for dataset, model in itertools.product(config.dataset, config.model):
        data = config.data.model_copy(update={"options": _options_for(config.data.options, dataset)})
        for q, lr, unit, every, sub, reduction in itertools.product(*other.values()):
            values = dict(zip(other, (q, lr, unit, every, sub, reduction), strict=True))
            seg = None if base_seg is None else SegmentationSettings(**base_seg, reduction=reduction)
            variant = ",".join(f"{k}={values[k]}" for k in varied)
            for seed, strategy in itertools.product(config.seeds, config.strategy):
                specs.append(
                    ExperimentSpec(
                        name=config.name,
                        variant=variant,
                        dataset=dataset,
                        model=model,
                        model_options=_options_for(config.model_options, model),
                        strategy=strategy,
                        strategy_options=_options_for(config.strategy_options, strategy),
                        seed=seed,
                        eval_sets=tuple(config.eval_sets_for(dataset)),
                        al=ALSettings(**base_al, query_size=q),
                        train=TrainSettings(**base_train, lr=lr),
                        track=TrackSettings(**base_track, unit=unit, every=every, subsample=sub),
                        data=data,
                        segmentation=seg,
                        device=config.device,
                        eval_batch_size=config.eval_batch_size,
                    )
                )
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):  # only possible if two sweep values resolve to the same experiment
        raise ConfigError(f"config {config.name!r} expands to duplicate experiments; check the sweep lists")
    return specs
