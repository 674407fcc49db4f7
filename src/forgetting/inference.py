"""Batched, eval-mode inference over tensors that are already in memory.

Images are ``uint8 [N, C, H, W]``; the model sees ``float32`` in ``[0, 1]``. Outputs stay on the model's
device; callers move them to the host once, after the whole pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from forgetting._tensors import iter_batches, model_device, to_input
from forgetting.data.source import DataSource, TensorSource
from forgetting.models.base import Classifier, Segmenter, dropout_modules, mc_dropout
from forgetting.models.factory import embeddings_of
from forgetting.performance import flush_denormals, inference_batch_size

__all__ = [
    "PoolOutputs",
    "autocast_context",
    "default_batch_size",
    "eval_mode",
    "forward_batches",
    "head_only_dropout",
    "iter_batches",
    "model_device",
    "predict",
    "to_input",
]


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own train/eval flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


@contextlib.contextmanager
def forward_batches(
    model: nn.Module, data: torch.Tensor | DataSource, *, batch_size: int | None = None, targets: bool = True
) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor | None]]]:
    """The eval-mode forward pass every evaluation shares::

        with forward_batches(model, data, batch_size=256) as batches:
            for logits, y in batches:
                ...  # accumulate metrics (no backpropagation: this runs under inference mode)

    Yields an iterator of ``(logits, y)`` per batch of ``data`` (uint8 images ``[N, C, H, W]`` or a
    :class:`~forgetting.data.source.DataSource`) on the model's device, with the model in eval mode, under
    ``torch.inference_mode``, the device's autocast and flushed subnormals (see
    :func:`forgetting.performance.flush_denormals`); every module's flag is restored when the block ends
    (also when it is left early). ``y`` is ``None`` with ``targets=False`` or for a source without targets.
    """
    source = data if isinstance(data, DataSource) else TensorSource(data)
    device = model_device(model)
    size = batch_size or default_batch_size(device, source.eval_input_shape, model)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for x, y in source.batches(device, size, targets=targets):
            yield model(x), y

    with eval_mode(model), torch.inference_mode(), autocast_context(device), flush_denormals():
        yield batches()


def default_batch_size(
    device: torch.device, input_shape: Sequence[int] | None = None, model: nn.Module | None = None
) -> int:
    """Pool-inference batch size for a device, a per-sample input shape ``(C, H, W)`` and the model: large
    on accelerators; on a CPU sized to the model's largest layer output (see
    :func:`forgetting.performance.inference_batch_size`)."""
    return inference_batch_size(device, input_shape, model)


@dataclass
class PoolOutputs:
    """What one eval pass over a set of images produced, on the model's device.

    Attributes:
        probs_N_C: float32 softmax probabilities, when asked for.
        embeddings_N_D: float32 penultimate features (``model.embed``), when asked for.
        mc_probs_K_N_C: float32 softmax of K MC-dropout passes, when ``mc_samples > 0``.
    """

    probs_N_C: torch.Tensor | None = None
    embeddings_N_D: torch.Tensor | None = None
    mc_probs_K_N_C: torch.Tensor | None = None


def head_only_dropout(model: nn.Module) -> bool:
    """Whether ``model`` is a zoo model (:class:`~forgetting.models.base.Classifier` /
    :class:`~forgetting.models.base.Segmenter`, which declare ``embed``, ``dropout_layer`` and ``head``) whose
    only dropout is ``dropout_layer``, right before its head: MC passes may then reuse the features."""
    if not isinstance(model, Classifier | Segmenter):
        return False
    others = [m for m in dropout_modules(model) if m is not model.dropout_layer]
    return not others


@flush_denormals()
@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor | DataSource,
    *,
    probs: bool = True,
    embeddings: bool = False,
    mc_samples: int = 0,
    batch_size: int | None = None,
    generator_seed: int = 0,
    embedding_layer: str | None = None,
) -> PoolOutputs:
    """One eval-mode pass over ``images``: uint8 ``[N, C, H, W]`` (any device) or a
    :class:`~forgetting.data.source.DataSource` (a lazy one is read batch by batch).

    Embeddings come from ``embedding_layer``, the zoo's ``embed`` or the model's ``features`` (see
    :func:`forgetting.models.embeddings_of`). MC dropout: when the model's only dropout is the one before its
    head (every classification model in :mod:`forgetting.models`), the features are computed once and the K
    stochastic passes only re-run dropout and the head, which is exactly the same distribution as K full
    passes and K times cheaper. Otherwise K full passes run with dropout on and everything else in eval mode.
    """
    source = images if isinstance(images, DataSource) else TensorSource(images)
    device = model_device(model)
    batch_size = batch_size or default_batch_size(device, source.eval_input_shape, model)
    fast_mc = mc_samples > 0 and head_only_dropout(model) and embedding_layer is None
    zoo_embed = embeddings and embedding_layer is None and isinstance(model, Classifier | Segmenter)
    probs_parts: list[torch.Tensor] = []
    embed_parts: list[torch.Tensor] = []
    mc_parts: list[torch.Tensor] = []
    fork_devices = [device] if device.type == "cuda" else []
    with eval_mode(model), autocast_context(device), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(generator_seed)
        for x, _ in source.batches(device, batch_size, targets=False):
            if fast_mc or zoo_embed:
                h = model.embed(x)  # type: ignore[operator]
                if embeddings:
                    embed_parts.append(h.float())
                if probs:
                    probs_parts.append(model.head(h).float().softmax(-1))  # type: ignore[operator]
                if mc_samples > 0 and fast_mc:
                    with mc_dropout(model):
                        hk = h.unsqueeze(0).expand(mc_samples, *h.shape)
                        mc_parts.append(
                            model.head(model.dropout_layer(hk)).float().softmax(-1)  # type: ignore[operator]
                        )
                    continue
            else:
                logits = None
                if embeddings:
                    h, logits = embeddings_of(model, x, layer=embedding_layer, logits=probs)
                    embed_parts.append(h)
                if probs:
                    probs_parts.append((model(x) if logits is None else logits).float().softmax(-1))
            if mc_samples > 0:
                with mc_dropout(model):
                    mc_parts.append(torch.stack([model(x).float().softmax(-1) for _ in range(mc_samples)]))
    return PoolOutputs(
        probs_N_C=torch.cat(probs_parts) if probs_parts else None,
        embeddings_N_D=torch.cat(embed_parts) if embed_parts else None,
        mc_probs_K_N_C=torch.cat(mc_parts, dim=1) if mc_parts else None,
    )
