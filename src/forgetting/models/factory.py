"""The user's own model: a factory, a registered name or an import path, built the same seeded way as the zoo.

A model reference (:data:`ModelRef`) is one of

* a name of the zoo or of :func:`register_model` (``"small-cnn"``, ``"deeplab"``);
* an import path ``"package.module:attribute"`` naming a callable that returns an ``nn.Module`` (the TOML
  configs of experiments, maps, augment and labelling projects use this form:
  ``model = "mypkg.nets:deeplab"``); the module must be importable (installed, or on ``PYTHONPATH``);
* in Python, the callable itself (``LoopConfig(model=lambda: MyNet())``).

Calling convention: zoo models are called as ``factory(in_channels, num_classes, **options)``. A callable or
an import path is called as ``factory(**options)`` (the ``model_options`` of the config); a factory
registered with ``data_args=True`` also gets ``in_channels=`` and ``num_classes=``. Every build runs inside a
forked RNG seeded with the round's seed, so any factory initialises identically for a seed and leaves the
global RNG alone.

Embeddings (``coreset``, ``badge``) come from, in this order: the layer named by ``embedding_layer`` (its
output, read through a forward hook, globally average-pooled when it is a feature map, flattened otherwise);
the zoo's ``embed``; a ``features(x)`` method of the model (same pooling). MC dropout (``bald``,
``batchbald``) works on any module that contains dropout layers with ``p > 0``: they alone are switched to
train mode.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from forgetting.exceptions import ConfigError
from forgetting.models.base import Classifier, Segmenter, has_dropout, seeded_construction
from forgetting.models.registry import MODELS, ModelSpec, Option, build_model, get_spec

__all__ = [
    "ModelRef",
    "build_from_ref",
    "check_model_for",
    "embeddings_of",
    "import_object",
    "is_import_path",
    "model_label",
    "register_model",
    "validate_model_ref",
]

logger = logging.getLogger(__name__)

#: A model: a registered name, an import path ``"pkg.mod:attr"``, or a factory callable.
ModelRef = str | Callable[..., nn.Module]


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path ``"package.module:attribute"`` (rather than a registry name)."""
    return ":" in name


def import_object(path: str, *, what: str = "model factory") -> Any:
    """The object an import path ``"package.module:attribute"`` names (``attribute`` may be dotted).

    Raises:
        ConfigError: the path is malformed, the module does not import (the message names the module and the
            error), or it has no such attribute (the message names both and lists what the module defines).
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {path!r}: an import path is 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{what} {path!r}: module {module_name!r} does not import ({err}); install it or put its folder "
            "on PYTHONPATH"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise ConfigError(
                f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}; it defines: "
                f"{', '.join(public) or 'nothing public'}"
            )
        obj = getattr(obj, part)
    return obj


def model_label(model: ModelRef) -> str:
    """A short name for logs and reports: the registry name, the import path, or the callable's name."""
    if isinstance(model, str):
        return model
    return getattr(model, "__qualname__", None) or type(model).__name__


def register_model(
    name: str,
    factory: Callable[..., nn.Module],
    *,
    options: Mapping[str, Any] | None = None,
    task: str | None = None,
    description: str = "",
    data_args: bool = False,
    overwrite: bool = False,
) -> ModelSpec:
    """Register a model factory under ``name``, so configs and ``LoopConfig(model=name)`` can use it.

    Args:
        name: the registry name (case-insensitive; ``_`` and ``-`` are equivalent).
        factory: returns an ``nn.Module``; called as ``factory(**options)``, plus ``in_channels=`` and
            ``num_classes=`` with ``data_args=True``.
        options: option name -> default value (or an :class:`~forgetting.models.registry.Option` with a
            validator); a config may set only these, and gets an error listing them otherwise.
        task: ``"classification"``, ``"segmentation"`` or ``None`` (any).
        description: one line for ``forgetting models``.
        data_args: pass the data's ``in_channels`` and ``num_classes`` to the factory.
        overwrite: replace an existing registration of ``name``.

    Raises:
        ConfigError: the name is taken (and ``overwrite`` is false), the factory is not callable, or the task
            is unknown.
    """
    key = name.strip().lower().replace("_", "-")
    if not key or is_import_path(key):
        raise ConfigError(f"model name {name!r} must be non-empty and contain no ':'")
    if not callable(factory):
        raise ConfigError(f"register_model({name!r}): factory must be callable, got {type(factory).__name__}")
    if task not in (None, "classification", "segmentation"):
        raise ConfigError(f"register_model({name!r}): task must be 'classification', 'segmentation' or None")
    if key in MODELS and not overwrite:
        raise ConfigError(f"model name {key!r} is already registered; pass overwrite=True to replace it")
    opts = {k: v if isinstance(v, Option) else Option(v, _any_value, "") for k, v in (options or {}).items()}
    spec = ModelSpec(
        key,
        task,  # type: ignore[arg-type]
        factory,
        opts,
        description or f"user model {model_label(factory)}",
        data_args=data_args,
    )
    MODELS[key] = spec
    return spec


def _any_value(value: Any) -> Any:
    return value


def validate_model_ref(model: ModelRef, options: Mapping[str, Any] | None = None) -> None:
    """Check a model reference without building it: a registry name with valid options, or an import path
    that imports to a callable (its options are the factory's business).

    Raises:
        ConfigError / UnknownNameError: with the name, path or option at fault.
    """
    if callable(model):
        return
    if not isinstance(model, str):
        raise ConfigError(f"model must be a name, an import path or a callable; got {type(model).__name__}")
    if is_import_path(model):
        obj = import_object(model)
        if not callable(obj):
            raise ConfigError(f"model factory {model!r} names a {type(obj).__name__}, which is not callable")
        return
    from forgetting.models.registry import validate_options

    validate_options(model, dict(options or {}))


def build_from_ref(
    model: ModelRef,
    in_channels: int,
    num_classes: int,
    *,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``model`` (see the module docstring for the calling conventions), seeded by ``seed``.

    Raises:
        ConfigError: the reference is unknown or does not import, the factory rejects the options, or it does
            not return an ``nn.Module``.
    """
    opts = dict(options or {})
    if isinstance(model, str) and not is_import_path(model):
        spec = get_spec(model)
        if spec.data_args:
            return build_model(spec.name, in_channels, num_classes, seed=seed, **opts)
        from forgetting.models.registry import validate_options

        return _call(spec.factory, validate_options(spec.name, opts), seed, spec.name)
    factory = import_object(model) if isinstance(model, str) else model
    if not callable(factory):
        raise ConfigError(f"model factory {model!r} names a {type(factory).__name__}, which is not callable")
    return _call(factory, opts, seed, model_label(model))


def _call(factory: Callable[..., Any], options: dict[str, Any], seed: int | None, label: str) -> nn.Module:
    with seeded_construction(seed):
        try:
            module = factory(**options)
        except TypeError as err:
            raise ConfigError(
                f"model factory {label!r} could not be called with options {options}: {err}; set "
                "model_options to the keyword arguments it takes"
            ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model factory {label!r} returned {type(module).__name__}, not a torch nn.Module")
    return module


# ------------------------------------------------------------------ what strategies need from a model


def _embedding_layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:30]
        raise ConfigError(
            f"embedding_layer {layer!r} is not a submodule of {type(model).__name__}; its submodules "
            f"include: {', '.join(names)}"
        ) from None


def _pooled(h: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` features from a layer output: feature maps are averaged over their spatial dims."""
    if h.ndim > 2:
        h = h.flatten(2).mean(-1)
    return h.float()


def embedding_kind(model: nn.Module, layer: str | None) -> str | None:
    """Where :func:`embeddings_of` reads ``model``'s embeddings: ``"layer"``, ``"zoo"`` (``embed``),
    ``"features"``, or ``None`` when it cannot."""
    if layer is not None:
        _embedding_layer(model, layer)
        return "layer"
    if isinstance(model, Classifier | Segmenter):
        return "zoo"
    if callable(getattr(model, "features", None)):
        return "features"
    return None


@contextlib.contextmanager
def _capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    out: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, output: Any) -> None:
        out.append(output[0] if isinstance(output, tuple | list) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield out
    finally:
        handle.remove()


def embeddings_of(
    model: nn.Module, x: torch.Tensor, *, layer: str | None = None, logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(embeddings float32 [B, D], logits or None)`` of a batch ``x`` (call in eval / inference mode).

    With ``logits`` the model's output is returned too, from the same forward where possible (a named layer,
    or the zoo's ``head(embed(x))``).

    Raises:
        ConfigError: the model offers no embeddings (the message says how to add them).
    """
    kind = embedding_kind(model, layer)
    if kind == "layer":
        with _capture(_embedding_layer(model, layer)) as seen:  # type: ignore[arg-type]
            out = model(x)
        return _pooled(seen[-1]), (out if logits else None)
    if kind == "zoo":
        h = model.embed(x)  # type: ignore[operator]
        return h.float(), (model.head(h) if logits else None)  # type: ignore[operator]
    if kind == "features":
        h = _pooled(model.features(x))  # type: ignore[operator]
        return h, (model(x) if logits else None)
    raise ConfigError(_no_embedding_message(model))


def _no_embedding_message(model: nn.Module, strategy: str | None = None) -> str:
    who = f"strategy {strategy!r} needs embeddings, but " if strategy else ""
    return (
        f"{who}model {type(model).__name__} has no embedding hook: define a method `features(x)` returning "
        "[B, D] (or a feature map, which is averaged), or name the layer whose output is the embedding with "
        "`embedding_layer` (LoopConfig / [al] embedding_layer), e.g. the penultimate block"
    )


def check_model_for(
    model: nn.Module, strategy_name: str, *, needs_mc: bool, needs_embeddings: bool, layer: str | None
) -> None:
    """Fail before training when ``model`` lacks what the strategy needs.

    Raises:
        ConfigError: MC dropout without a dropout layer, or embeddings without a hook; the message names the
            strategy, the requirement and the fix.
    """
    if needs_mc and not has_dropout(model):
        raise ConfigError(
            f"strategy {strategy_name!r} needs MC dropout, but model {type(model).__name__} has no dropout "
            "layer with p > 0; add an nn.Dropout to the model (for the zoo: model_options.dropout > 0), or "
            "choose a strategy without MC samples (entropy, margin, switch, gauss)"
        )
    if needs_embeddings and embedding_kind(model, layer) is None:
        raise ConfigError(_no_embedding_message(model, strategy_name))
