"""Shared model interfaces and the dropout utilities used by MC-dropout strategies.

Every model in the zoo follows one contract, so the strategies can treat them alike:

* ``embed(x)`` returns ``float32 [B, D]`` features, with ``D == model.embed_dim``;
* ``dropout_layer`` is the only place the ``dropout`` option acts (``p == 0`` makes it the identity);
* ``head`` is the final layer (``nn.Linear`` for classifiers, a 1x1 ``nn.Conv2d`` for segmenters).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from forgetting.exceptions import ShapeError

__all__ = [
    "Classifier",
    "Segmenter",
    "count_parameters",
    "dropout_modules",
    "has_dropout",
    "he_init",
    "mc_dropout",
    "seeded_construction",
]


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation, ``fan_in`` for ReLU, of every ``Conv2d`` / ``Linear`` weight in
    ``module``; biases zero. For the plain ReLU stacks without normalisation (``mlp``, ``small-cnn``):
    PyTorch's default (uniform, gain sqrt(1/3)) shrinks the signal at every layer, and with the handful of
    optimizer steps of an early active-learning round (20 labels, batch 16: 2 steps per epoch) the network
    then stays on its initial plateau at chance level. Call it before the head is created, or on the whole
    model; seeded through the model's seed like every other initialisation.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Classifier(nn.Module, abc.ABC):
    """Base class of the classification models.

    Input: ``float32 [B, C, H, W]`` in ``[0, 1]``. Output of ``forward``: logits ``float32 [B, num_classes]``.

    ``forward(x)`` computes exactly ``head(dropout_layer(features(x)))``; ``embed(x)`` is ``features(x)``
    cast to ``float32`` (it differs from what the head sees only in dtype, under autocast). Consequently, in
    eval mode (dropout inactive) ``model(x) == model.head(model.embed(x))`` up to float rounding.

    Subclasses build their layers, set ``embed_dim`` and implement :meth:`features`; they call
    :meth:`_init_head` to create ``dropout_layer`` and ``head``.
    """

    embed_dim: int
    num_classes: int
    head: nn.Linear
    dropout_layer: nn.Dropout

    def _init_head(self, embed_dim: int, num_classes: int, dropout: float) -> None:
        self.embed_dim = int(embed_dim)
        self.num_classes = int(num_classes)
        self.dropout_layer = nn.Dropout(p=float(dropout))
        self.head = nn.Linear(self.embed_dim, self.num_classes)

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> penultimate features ``[B, embed_dim]`` (in the autocast dtype, if any)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> ``float32 [B, embed_dim]``: what the head's dropout layer receives."""
        return self.features(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> logits ``[B, num_classes]`` = ``head(dropout_layer(features(x)))``."""
        return self.head(self.dropout_layer(self.features(x)))


class Segmenter(nn.Module, abc.ABC):
    """Base class of the segmentation models (encoder-decoders that work at any input size).

    Input: ``float32 [B, C, H, W]`` in ``[0, 1]``, any ``H, W >= 1``. Output of ``forward``: per-pixel logits
    ``float32 [B, num_classes, H, W]`` at the input resolution.

    ``forward(x)`` pads ``x`` on the bottom/right (replicate padding) to the next multiple of
    ``multiple = 2 ** depth``, runs the network, computes ``head(dropout_layer(decoder_features))`` and crops
    back to ``[..., :H, :W]``. ``dropout_layer`` is an ``nn.Dropout2d`` (whole feature channels dropped),
    the identity when ``dropout == 0``.

    ``embed(x)`` is the global average of the bottleneck feature map, ``float32 [B, embed_dim]``; it runs the
    encoder only, so it is cheaper than ``forward``. ``decode(x)`` is the decoder output at the padded
    resolution, so MC-dropout passes can run ``head(dropout_layer(.))`` K times on one decoding.
    """

    embed_dim: int
    num_classes: int
    multiple: int
    head: nn.Conv2d
    dropout_layer: nn.Dropout2d

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad ``[B, C, H, W]`` bottom/right so that H and W are multiples of ``multiple``."""
        if x.dim() != 4:
            raise ShapeError(
                f"{type(self).__name__} expects a 4-D input [B, C, H, W]; got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        pad_h = (-h) % self.multiple
        pad_w = (-w) % self.multiple
        if pad_h == 0 and pad_w == 0:
            return x
        return nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> ``float32 [B, embed_dim]``: global average of the bottleneck."""

    @abc.abstractmethod
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 [B, C, H, W]`` -> decoder features ``[B, F, H', W']`` (padded ``H' >= H, W' >= W``)."""


def dropout_modules(model: nn.Module) -> list[_DropoutNd]:
    """Every dropout module of ``model`` (``nn.Dropout``, ``nn.Dropout1d/2d/3d``, alpha dropout)."""
    return [m for m in model.modules() if isinstance(m, _DropoutNd)]


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` has at least one dropout module with ``p > 0`` (so MC dropout is meaningful)."""
    return any(m.p > 0 for m in dropout_modules(model))


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager for Monte-Carlo dropout: every dropout module in train mode, all else unchanged.

    Only the dropout modules' ``training`` flags change: BatchNorm and every other module keep their mode
    (use it inside ``eval_mode`` to get eval BatchNorm statistics with stochastic dropout). Each dropout
    module's own flag is restored on exit, also when the body raises. Yields ``model``.
    """
    modules = dropout_modules(model)
    flags = [m.training for m in modules]
    for m in modules:
        m.training = True
    try:
        yield model
    finally:
        for m, training in zip(modules, flags, strict=True):
            m.training = training


@contextlib.contextmanager
def seeded_construction(seed: int | None) -> Iterator[None]:
    """Build modules inside this block deterministically: a forked CPU RNG seeded with ``seed`` (the
    caller's global RNG state is untouched); nothing happens with ``seed=None``."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
