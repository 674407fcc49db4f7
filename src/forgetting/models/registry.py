"""The model registry: names, tasks, options with defaults and validation, and :func:`build_model`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.models.base import seeded_construction
from forgetting.models.classification import MLP, VGG, VGG_CONFIGS, DenseNet, ResNet, SmallCNN
from forgetting.models.segmentation import DeconvNet, UNet

__all__ = ["MODELS", "ModelSpec", "Option", "build_model", "list_models", "model_info"]

logger = logging.getLogger(__name__)

Task = Literal["classification", "segmentation"]


# --- option validators: each returns the normalised value or raises ValueError with what is allowed ---


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("an integer >= 1")
    return int(value)


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value < 1.0):
        raise ValueError("a number in [0, 1) (0 disables dropout)")
    return float(value)


def _int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ValueError("a list of integers >= 1 (may be empty)")
    if isinstance(value, int):
        value = (value,)
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        raise ValueError("a list of integers >= 1 (may be empty)")
    return tuple(int(v) for v in value)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError("one of " + ", ".join(repr(a) for a in allowed))
        return str(value)

    return check


@dataclass(frozen=True)
class Option:
    """One model option: its default, a validator (value -> normalised value) and a one-line description."""

    default: Any
    check: Callable[[Any], Any]
    doc: str


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build a model and which options it takes.

    Attributes:
        task: ``"classification"``, ``"segmentation"``, or ``None`` for a user model of either task.
        data_args: the factory takes ``(in_channels, num_classes)`` first (every zoo model); user factories
            registered without it are called with their options only.
    """

    name: str
    task: Task | None
    factory: Callable[..., nn.Module]
    options: Mapping[str, Option]
    description: str
    data_args: bool = True

    def defaults(self) -> dict[str, Any]:
        """The default value of every option."""
        return {key: opt.default for key, opt in self.options.items()}


_DROPOUT = Option(0.0, _probability, "dropout probability just before the head (0 disables)")


def _resnet(blocks: tuple[int, ...]) -> Callable[..., nn.Module]:
    def factory(in_channels: int, num_classes: int, **options: Any) -> nn.Module:
        return ResNet(in_channels, num_classes, blocks=blocks, **options)

    return factory


def _vgg(name: str) -> Callable[..., nn.Module]:
    def factory(in_channels: int, num_classes: int, **options: Any) -> nn.Module:
        return VGG(in_channels, num_classes, config=VGG_CONFIGS[name], **options)

    return factory


_CNN_OPTIONS = {
    "width": Option(64, _positive_int, "channels of the first stage (later stages 2x, 4x, 8x)"),
    "dropout": _DROPOUT,
}

#: Every model by name.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mlp",
            "classification",
            MLP,
            {
                "image_size": Option(28, _positive_int, "side of the square input images"),
                "hidden": Option((256, 128), _int_tuple, "hidden layer widths"),
                "dropout": _DROPOUT,
            },
            "fully connected network on flattened images",
        ),
        ModelSpec(
            "small-cnn",
            "classification",
            SmallCNN,
            {
                "width": Option(32, _positive_int, "channels of the first conv block (second block 2x)"),
                "dropout": Option(0.25, _probability, "dropout probability just before the head"),
                "embed_dim": Option(128, _positive_int, "units of the penultimate fully connected layer"),
            },
            "small CNN (Keras mnist_cnn style) for CPU-sized experiments; in no paper",
        ),
        ModelSpec("resnet18", "classification", _resnet((2, 2, 2, 2)), _CNN_OPTIONS, "CIFAR-style ResNet-18"),
        ModelSpec("resnet34", "classification", _resnet((3, 4, 6, 3)), _CNN_OPTIONS, "CIFAR-style ResNet-34"),
        ModelSpec(
            "vgg11", "classification", _vgg("vgg11"), _CNN_OPTIONS, "CIFAR-style VGG-11 with batch norm"
        ),
        ModelSpec(
            "vgg16", "classification", _vgg("vgg16"), _CNN_OPTIONS, "CIFAR-style VGG-16 with batch norm"
        ),
        ModelSpec(
            "densenet121",
            "classification",
            DenseNet,
            {
                "width": Option(32, _positive_int, "growth rate k (stem 2k channels, bottlenecks 4k)"),
                "dropout": _DROPOUT,
            },
            "CIFAR-style DenseNet-121 (DenseNet-BC, growth rate = width)",
        ),
        ModelSpec(
            "unet",
            "segmentation",
            UNet,
            {
                "base": Option(16, _positive_int, "channels at full resolution (doubled at each level)"),
                "depth": Option(
                    4, _positive_int, "number of poolings; inputs are padded to a multiple of 2**depth"
                ),
                "upsample": Option("bilinear", _choice("bilinear", "transpose"), "decoder upsampling"),
                "dropout": Option(0.0, _probability, "channel dropout just before the head (0 disables)"),
            },
            "U-Net with batch norm, any input size",
        ),
        ModelSpec(
            "deconvnet",
            "segmentation",
            DeconvNet,
            {
                "base": Option(16, _positive_int, "channels at full resolution (doubled at each level)"),
                "depth": Option(
                    4, _positive_int, "number of poolings; inputs are padded to a multiple of 2**depth"
                ),
                "dropout": Option(0.0, _probability, "channel dropout just before the head (0 disables)"),
            },
            "DeconvNet-style encoder-decoder with max-unpooling, any input size",
        ),
    )
}


def list_models(task: Task | None = None) -> list[str]:
    """Sorted names of the registered models, optionally only those of one ``task``."""
    if task is not None and task not in ("classification", "segmentation"):
        raise ConfigError(f"task must be 'classification' or 'segmentation'; got {task!r}")
    return sorted(
        name for name, spec in MODELS.items() if task is None or spec.task is None or spec.task == task
    )


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (case-insensitive, ``_`` and ``-`` equivalent)."""
    if not isinstance(name, str) or _normalise_name(name) not in MODELS:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODELS[_normalise_name(name)]


def model_info(name: str) -> dict[str, Any]:
    """``{"name", "task", "description", "options"}`` of a model; ``options``: option -> default."""
    spec = get_spec(name)
    return {"name": spec.name, "task": spec.task, "description": spec.description, "options": spec.defaults()}


def validate_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of model ``name``: the defaults overridden by ``options``, each checked and normalised.

    Raises :class:`ConfigError` naming the option and the allowed options / values.
    """
    spec = get_spec(name)
    allowed = ", ".join(sorted(spec.options))
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(repr(k) for k in unknown)} for model {spec.name!r}; "
            f"allowed options: {allowed}"
        )
    resolved: dict[str, Any] = {}
    for key, opt in spec.options.items():
        value = options.get(key, opt.default)
        try:
            resolved[key] = opt.check(value)
        except ValueError as err:
            raise ConfigError(
                f"bad value {value!r} for option {key!r} of model {spec.name!r}: must be {err} "
                f"({opt.doc}; default {opt.default!r}); allowed options: {allowed}"
            ) from None
    return resolved


def build_model(
    name: str, in_channels: int, num_classes: int, *, seed: int | None = None, **options: Any
) -> nn.Module:
    """Build model ``name`` for ``in_channels``-channel inputs and ``num_classes`` classes, on the CPU.

    ``options`` override the model's defaults (see :func:`model_info`). With ``seed`` the initialisation
    is deterministic and the global RNG state is left untouched (construction runs in a forked RNG).

    Raises :class:`UnknownNameError` for an unknown name (lists the known ones) and :class:`ConfigError`
    for a bad ``in_channels`` / ``num_classes`` / option (names it and what is allowed).
    """
    spec = get_spec(name)
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1 for model {spec.name!r}; got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or None; got {seed!r}")
    resolved = validate_options(spec.name, options)
    with seeded_construction(seed):
        if spec.data_args:
            model = spec.factory(in_channels, num_classes, **resolved)
        else:
            model = spec.factory(**resolved)
    logger.debug(
        "built %s (%s) in_channels=%d num_classes=%d options=%s seed=%s",
        spec.name,
        spec.task,
        in_channels,
        num_classes,
        resolved,
        seed,
    )
    return model
