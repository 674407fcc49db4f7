"""Batched, eval-mode inference over tensors that are already in memory.

Images are ``uint8 [N, C, H, W]``; the model sees ``float32`` in ``[0, 1]``. Outputs stay on the model's
device; callers move them to the host once, after the whole pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_input(images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """``uint8 [B, C, H, W]`` -> ``float32 [B, C, H, W]`` in ``[0, 1]`` on ``device``."""
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.float().div_(255.0)


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


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Contiguous slices covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def default_batch_size(device: torch.device) -> int:
    """Pool-inference batch size for a device: large on accelerators, cache-friendly on CPU."""
    return 4096 if device.type in ("cuda", "mps") else 1024


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


def _head_only_dropout(model: nn.Module) -> bool:
    """True when the model's only dropout sits right before its head, so MC passes can reuse features."""
    dropout_layer = getattr(model, "dropout_layer", None)
    if not hasattr(model, "embed") or not hasattr(model, "head") or dropout_layer is None:
        return False
    others = [
        m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m is not dropout_layer
    ]
    return not others


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    probs: bool = True,
    embeddings: bool = False,
    mc_samples: int = 0,
    batch_size: int | None = None,
    generator_seed: int = 0,
) -> PoolOutputs:
    """One eval-mode pass over ``images`` (uint8 ``[N, C, H, W]``, any device).

    MC dropout: when the model's only dropout is the one before its head (every classification model in
    :mod:`forgetting.models`), the features are computed once and the K stochastic passes only re-run
    dropout and the head, which is exactly the same distribution as K full passes and K times cheaper.
    Otherwise K full passes run with dropout on and everything else in eval mode.
    """
    from forgetting.models import mc_dropout  # local: models import inference helpers

    device = model_device(model)
    batch_size = batch_size or default_batch_size(device)
    n = int(images.shape[0])
    need_embed = embeddings or (mc_samples > 0 and _head_only_dropout(model))
    probs_parts: list[torch.Tensor] = []
    embed_parts: list[torch.Tensor] = []
    mc_parts: list[torch.Tensor] = []
    fork_devices = [device] if device.type == "cuda" else []
    with eval_mode(model), autocast_context(device), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(generator_seed)
        for sl in iter_batches(n, batch_size):
            x = to_input(images[sl], device)
            if need_embed:
                h = model.embed(x)
                if embeddings:
                    embed_parts.append(h.float())
                if probs:
                    probs_parts.append(model.head(h).float().softmax(-1))
                if mc_samples > 0:
                    with mc_dropout(model):
                        hk = h.unsqueeze(0).expand(mc_samples, *h.shape)
                        mc_parts.append(model.head(model.dropout_layer(hk)).float().softmax(-1))
            else:
                if probs:
                    probs_parts.append(model(x).float().softmax(-1))
                if mc_samples > 0:
                    with mc_dropout(model):
                        mc_parts.append(
                            torch.stack([model(x).float().softmax(-1) for _ in range(mc_samples)])
                        )
    return PoolOutputs(
        probs_N_C=torch.cat(probs_parts) if probs_parts else None,
        embeddings_N_D=torch.cat(embed_parts) if embed_parts else None,
        mc_probs_K_N_C=torch.cat(mc_parts, dim=1) if mc_parts else None,
    )
