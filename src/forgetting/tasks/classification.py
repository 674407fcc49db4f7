"""Classification: one class per sample; the built-in task of every image-classification dataset.

Elements are samples: the pool tracker has shape ``(P,)``, a strategy's scores are per sample already (no
reduction), and every registered strategy applies. Evaluation gives accuracy, NLL and ECE.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from forgetting.data.source import DataSource
from forgetting.evaluation import evaluate
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.inference import model_device, predict
from forgetting.initial import initial_labeled_set
from forgetting.strategies import Input, Strategy, StrategyInputs
from forgetting.tasks.base import PoolContext, PoolInputs, Task

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """One class per sample (targets int64 ``[N]``): accuracy, NLL and ECE; every strategy applies.

    Stored per round: the pool's ``switches`` (int16 ``[P]``), ``observations`` (int32 ``[P]``) and, with the
    pool's true labels (oracle strategies), ``forgetting`` and ``never_learned``; per queried sample the
    model's ``predicted`` class (int64) and its ``confidence`` (float32).
    """

    name: ClassVar[str] = "classification"
    headline_metric: ClassVar[str] = "accuracy"
    element: ClassVar[str] = "sample"
    divergence_metric: ClassVar[str | None] = "nll"

    def support(self, strategy: Strategy) -> str | None:
        """Every strategy runs on samples: the form is ``"samples"``."""
        return "samples"

    def initial_set(self, train: DataSource, size: int, *, selection: str, seed: int) -> np.ndarray:
        """Stratified by class (needs the labels: a lazy source reads them once unless it was given
        ``targets``) or uniform; see :func:`forgetting.initial.initial_labeled_set`."""
        if selection == "uniform":
            return super().initial_set(train, size, selection=selection, seed=seed)
        return initial_labeled_set(train.read_targets(), size, selection=selection, seed=seed)

    def evaluate(self, model: nn.Module, data: DataSource, *, batch_size: int | None) -> dict[str, float]:
        """``accuracy``, ``nll`` and ``ece`` (:func:`forgetting.evaluation.evaluate`)."""
        return evaluate(model, data, batch_size=batch_size)

    def pool_inputs(self, model: nn.Module | None, strategy: Strategy, ctx: PoolContext) -> PoolInputs:
        """Probabilities, MC-dropout samples and embeddings in one eval-mode pass over the pool (only those
        declared), the tracked counts, the pool's indices and, for oracles, its labels."""
        requires = frozenset(strategy.requires)
        inputs = StrategyInputs(n_pool=len(ctx.pool))
        inputs.pool_indices_N = torch.from_numpy(np.asarray(ctx.pool_indices, dtype=np.int64))
        want_probs = Input.PROBS in requires
        want_embed = Input.EMBEDDINGS in requires
        want_mc = Input.MC_PROBS in requires
        if want_probs or want_embed or want_mc:
            if model is None:
                raise ConfigError(f"strategy {strategy.name!r} needs a trained model")
            out = predict(
                model,
                ctx.pool,
                probs=want_probs,
                embeddings=want_embed,
                mc_samples=ctx.mc_samples if want_mc else 0,
                batch_size=ctx.batch_size,
                generator_seed=ctx.mc_seed,
                embedding_layer=ctx.embedding_layer,
            )
            inputs.probs_N_C = out.probs_N_C
            inputs.embeddings_N_D = out.embeddings_N_D
            inputs.mc_probs_K_N_C = out.mc_probs_K_N_C
            if want_embed:
                inputs.labeled_embeddings_L_D = predict(
                    model,
                    ctx.labeled,
                    probs=False,
                    embeddings=True,
                    batch_size=ctx.batch_size,
                    embedding_layer=ctx.embedding_layer,
                ).embeddings_N_D
        if Input.DYNAMICS in requires and ctx.tracker is not None:
            inputs.switches_N = ctx.tracker.switches
        if Input.POOL_LABELS in requires:
            if ctx.pool_targets is None:
                raise ConfigError(
                    f"strategy {strategy.name!r} needs the true labels of the pool (oracle analysis); it "
                    "cannot run on unlabeled data"
                )
            labels = ctx.pool_targets
            inputs.pool_labels_N = labels if model is None else labels.to(model_device(model))
            if ctx.tracker is not None:
                inputs.forgetting_N = ctx.tracker.forgetting
                inputs.never_learned_N = ctx.tracker.never_learned
        return PoolInputs(inputs, "samples")

    @torch.inference_mode()
    def query_arrays(
        self,
        model: nn.Module | None,
        strategy: Strategy,
        ctx: PoolContext,
        positions: np.ndarray,
        computed: PoolInputs,
    ) -> dict[str, np.ndarray]:
        """``predicted`` (int64 ``[n]``) and ``confidence`` (float32 ``[n]``, the predicted class's softmax)
        of the picks; nothing without a model."""
        if model is None or positions.size == 0:
            return {}
        picks = ctx.pool.subset(positions)
        probs = predict(model, picks, batch_size=ctx.batch_size).probs_N_C  # eval mode, flags restored
        assert probs is not None
        top = probs.float().max(dim=1)
        return {
            "predicted": top.indices.cpu().numpy().astype(np.int64),
            "confidence": top.values.cpu().numpy().astype(np.float32),
        }

    def dynamics(self, tracker: EventTracker, computed: PoolInputs | None, *, labels: bool) -> dict:
        out = {
            "switches": tracker.switches.cpu().numpy().astype(np.int16),
            "observations": tracker.observations.cpu().numpy().astype(np.int32),
        }
        if labels:
            out["forgetting"] = tracker.forgetting.cpu().numpy().astype(np.int16)
            out["never_learned"] = tracker.never_learned.cpu().numpy()
        return out
