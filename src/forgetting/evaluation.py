"""Evaluation metrics for a trained classifier: accuracy, negative log-likelihood and calibration error."""

from __future__ import annotations

import torch
from torch import nn

from forgetting.data.source import DataSource
from forgetting.inference import forward_batches, model_device
from forgetting.performance import flush_denormals

METRICS = ("accuracy", "nll", "ece")


@flush_denormals()
@torch.inference_mode()
def evaluate(
    model: nn.Module, data: DataSource, *, batch_size: int | None = None, ece_bins: int = 15
) -> dict[str, float]:
    """Accuracy, mean NLL and ECE (``ece_bins`` equal-width confidence bins) of ``model`` on ``data``.

    ``data`` is any :class:`~forgetting.data.source.DataSource` with int64 ``[N]`` class-id targets (a
    :class:`~forgetting.data.dataset.Split`, or a lazy Dataset). One host sync at the end of the pass. A
    model whose outputs are NaN gets NaN metrics (no error).
    """
    device = model_device(model)
    n = len(data)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    bin_count = torch.zeros(ece_bins, dtype=torch.float64, device=device)
    bin_conf = torch.zeros(ece_bins, dtype=torch.float64, device=device)
    bin_acc = torch.zeros(ece_bins, dtype=torch.float64, device=device)
    with forward_batches(model, data, batch_size=batch_size) as batches:
        for logits, y in batches:
            assert y is not None
            logp = logits.float().log_softmax(-1)
            conf, pred = logp.exp().max(-1)
            hit = (pred == y).double()
            correct += hit.sum()
            nll -= logp.gather(1, y[:, None]).double().sum()
            # NaN confidences (a diverged model) fall in bin 0 and make the ECE NaN instead of an IndexError
            b = (conf * ece_bins).nan_to_num(0.0).long().clamp_(0, ece_bins - 1)
            bin_count.index_add_(0, b, torch.ones_like(hit))
            bin_conf.index_add_(0, b, conf.double())
            bin_acc.index_add_(0, b, hit)
    ece = (bin_conf - bin_acc).abs().sum() / max(n, 1)
    out = torch.stack([correct / max(n, 1), nll / max(n, 1), ece]).tolist()
    return dict(zip(METRICS, out, strict=True))
