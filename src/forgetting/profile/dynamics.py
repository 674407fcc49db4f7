"""Per-sample training dynamics of a classifier in O(1) state per sample: :class:`DynamicsAccumulator`.

Each observation of a sample (its logits ``z`` and its label ``y``) updates running statistics on the
device, vectorised over the batch, without host synchronisation:

==========================  =======================================================================
read-out                    definition (over the sample's observations ``t = 1..T``)
==========================  =======================================================================
``confidence``              mean of the gold-label probability ``p_t = softmax(z_t)[y]`` (cartography)
``variability``             population standard deviation of ``p_t`` (cartography; Welford's update)
``correctness``             share of observations with ``argmax z_t == y`` (cartography)
``aum``                     mean of the margin ``z_t[y] - max_{k != y} z_t[k]`` (Pleiss et al., AUM)
``final_loss``              cross entropy ``-log p_T`` at the latest observation
``first_learned_epoch``     epoch of the first correct observation, -1 if none
``forgetting`` etc.         the :class:`~forgetting.events.EventTracker` counts: forgetting, learning and
                            switch events, the learned-for-good epoch, ``never_learned``
==========================  =======================================================================

The state is 6 numbers per sample plus the tracker's 6 bytes, whatever the number of epochs. Welford's
running mean and sum of squared deviations (rather than a raw sum of squares) keep the variability exact
in float32.

Two ways to feed it:

* **presentation time** (Toneva et al.'s definition, the default of :func:`forgetting.profile.profile`):
  the mini-batch's own logits from the training forward pass, handed over by
  :func:`forgetting.training.fit` (``on_batch_end``) or by a user's loop through
  ``observer.batch_end(model, rows, logits, targets)``; no extra forward pass;
* **eval mode**: :func:`eval_observation` returns an :class:`~forgetting.observe.ObservationCallback` that
  predicts the training set in eval mode after every epoch and feeds the logits here.

Optionally (``history_dir``), the logits of every epoch are also written as cartography's
``dynamics_epoch_<e>.jsonl`` files (one line per sample: ``guid``, ``logits_epoch_<e>``, ``gold``); that is
the only per-epoch history, and it costs an ``[N, K]`` buffer and one device-to-host copy per epoch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from forgetting.callbacks import Callback
from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.observe import ObservationCallback

__all__ = ["DynamicsAccumulator", "SampleDynamics", "eval_observation", "margins"]

logger = logging.getLogger(__name__)

_FLOAT_FIELDS = ("prob_mean", "prob_m2", "margin_sum", "last_loss")
_INT_FIELDS = ("observations", "correct_count", "first_learned")


def margins(logits_B_K: torch.Tensor, targets_B: torch.Tensor) -> torch.Tensor:
    """float32 ``[B]``: the gold logit minus the largest other logit (the margin whose mean is AUM)."""
    z = logits_B_K.float()
    t = targets_B.to(device=z.device, dtype=torch.int64)[:, None]
    gold = z.gather(1, t).squeeze(1)
    other = z.scatter(1, t, float("-inf")).amax(1)
    return gold - other


@dataclass
class SampleDynamics:
    """The read-outs of a :class:`DynamicsAccumulator`, as host numpy arrays of length N.

    Attributes:
        observations: int32, observations per sample (presentations or eval passes).
        confidence, variability, correctness, aum, final_loss: float32 (NaN where never observed).
        first_learned_epoch, learned_epoch: int64, -1 where undefined (``learned_epoch``: the epoch since
            which the sample stayed correct, "learned for good").
        last_forgotten_epoch: int64, -1 where never forgotten.
        forgetting, learning, switches: int32 event counts.
        never_learned: bool, observed and never predicted correctly.
        correct: bool, correct at the latest observation.
        predicted: int64, the latest prediction.
    """

    observations: np.ndarray
    confidence: np.ndarray
    variability: np.ndarray
    correctness: np.ndarray
    aum: np.ndarray
    final_loss: np.ndarray
    first_learned_epoch: np.ndarray
    learned_epoch: np.ndarray
    last_forgotten_epoch: np.ndarray
    forgetting: np.ndarray
    learning: np.ndarray
    switches: np.ndarray
    never_learned: np.ndarray
    correct: np.ndarray
    predicted: np.ndarray

    @property
    def unforgettable(self) -> np.ndarray:
        """bool ``[N]``: learned at some observation and never forgotten (Toneva et al.)."""
        return (self.forgetting == 0) & ~self.never_learned & (self.observations > 0)

    def forgetting_score(self) -> np.ndarray:
        """float64 ``[N]``: the forgetting count, with never-learned samples above every count (Toneva et
        al. rank them as the most forgettable)."""
        score = self.forgetting.astype(np.float64)
        top = float(score.max(initial=0)) + 1.0
        return np.where(self.never_learned, top, score)


class DynamicsAccumulator(Callback):
    """Running per-sample statistics of a classifier's training dynamics (see the module docstring).

    Args:
        n: N, the number of samples (rows of the training data).
        num_classes: K; every observation's logits must be ``[B, K]``.
        device: where the state lives; default the device of the first logits.
        presentation: take the per-batch hook of :func:`forgetting.training.fit` / the
            :class:`~forgetting.observe.Observer` (``True``), or be fed by :func:`eval_observation`.
        history_dir: write cartography-style ``dynamics_epoch_<e>.jsonl`` files there (optional).

    Attributes:
        tracker: the :class:`~forgetting.events.EventTracker` of the forgetting, learning and switch events.
    """

    def __init__(
        self,
        n: int,
        num_classes: int,
        *,
        device: torch.device | str | None = None,
        presentation: bool = True,
        history_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if n < 0 or num_classes < 1:
            raise ConfigError(
                f"DynamicsAccumulator needs n >= 0 and num_classes >= 1, got {n}, {num_classes}"
            )
        self.n = int(n)
        self.num_classes = int(num_classes)
        self.wants_batches = bool(presentation)
        self.tracker = EventTracker((self.n,), device=device, num_classes=self.num_classes, track_epochs=True)
        self._device = None if device is None else torch.device(device)
        self._state: dict[str, torch.Tensor] | None = None
        self.history_dir = None if history_dir is None else Path(history_dir)
        self._history: torch.Tensor | None = None
        self._history_seen: torch.Tensor | None = None
        self._history_epoch: int | None = None
        self._targets: torch.Tensor | None = None

    # ------------------------------------------------------------------ state
    def _get_state(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._state is None:
            with torch.inference_mode(False):  # may be called inside an eval pass's inference_mode
                state = {k: torch.zeros(self.n, dtype=torch.float32, device=device) for k in _FLOAT_FIELDS}
                state |= {k: torch.zeros(self.n, dtype=torch.int32, device=device) for k in _INT_FIELDS}
                state["first_learned"].fill_(-1)
            self._state = state
            self._device = device
        return self._state

    @property
    def nbytes(self) -> int:
        """Bytes of the per-sample state (the accumulator's and its tracker's; no history buffer)."""
        return self.n * 4 * (len(_FLOAT_FIELDS) + len(_INT_FIELDS)) + self.tracker.nbytes

    # ------------------------------------------------------------------ feeding
    def update(self, rows: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> None:
        """Count one batch of observations.

        Args:
            rows: int64 ``[B]`` sample indices, unique within the call.
            logits: ``[B, K]`` (any float dtype; computed in float32).
            targets: int64 ``[B]`` labels.
            epoch: the training epoch of the observation (from 1).
        """
        if logits.ndim != 2 or int(logits.shape[1]) != self.num_classes:
            raise ConfigError(
                f"the model's logits have shape {tuple(logits.shape)}, but the profile counts "
                f"{self.num_classes} classes: the model must return [B, {self.num_classes}] (a model "
                "factory of your own must take the number of classes, e.g. register it with data_args=True)"
            )
        if int(rows.shape[0]) != int(logits.shape[0]) or int(targets.shape[0]) != int(logits.shape[0]):
            raise ConfigError(
                f"rows {tuple(rows.shape)}, logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                "must agree on the batch size"
            )
        device = self._device or logits.device
        state = self._get_state(device)
        with torch.no_grad():
            z = logits.detach().to(device).float()
            idx = rows.to(device=device, dtype=torch.int64)
            t = targets.to(device=device, dtype=torch.int64)
            logp = z.log_softmax(1).gather(1, t[:, None]).squeeze(1)
            p = logp.exp()
            pred = z.argmax(1)
            correct = pred == t
            margin = margins(z, t)

            count = state["observations"].index_select(0, idx) + 1
            mean = state["prob_mean"].index_select(0, idx)
            delta = p - mean
            new_mean = mean + delta / count
            m2 = state["prob_m2"].index_select(0, idx) + delta * (p - new_mean)
            state["observations"].index_copy_(0, idx, count)
            state["prob_mean"].index_copy_(0, idx, new_mean)
            state["prob_m2"].index_copy_(0, idx, m2)
            state["margin_sum"].index_add_(0, idx, margin)
            state["correct_count"].index_add_(0, idx, correct.to(torch.int32))
            state["last_loss"].index_copy_(0, idx, -logp)
            first = state["first_learned"].index_select(0, idx)
            state["first_learned"].index_copy_(0, idx, torch.where(correct & (first < 0), int(epoch), first))
            if self.history_dir is not None:
                self._record_history(idx, z, t, epoch)
        self.tracker.update(idx, pred, t, epoch=int(epoch))

    # ------------------------------------------------------------------ the hooks
    def on_batch_end(
        self,
        model: nn.Module,
        *,
        rows: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        epoch: int,
        step: int,
    ) -> None:
        if self.wants_batches:
            self.update(rows, logits, targets, epoch=epoch)

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        if self.wants_batches:
            self.flush_history()

    # ------------------------------------------------------------------ history (optional JSONL)
    def _record_history(self, idx: torch.Tensor, z: torch.Tensor, t: torch.Tensor, epoch: int) -> None:
        if self._history_epoch is not None and epoch != self._history_epoch:
            self.flush_history()
        if self._history is None:
            with torch.inference_mode(False):
                self._history = torch.zeros(self.n, self.num_classes, dtype=torch.float32, device=z.device)
                self._history_seen = torch.zeros(self.n, dtype=torch.bool, device=z.device)
                self._targets = torch.full((self.n,), -1, dtype=torch.int64, device=z.device)
        assert self._history_seen is not None and self._targets is not None
        self._history.index_copy_(0, idx, z)
        self._history_seen.index_fill_(0, idx, True)
        self._targets.index_copy_(0, idx, t)
        self._history_epoch = int(epoch)

    def flush_history(self) -> Path | None:
        """Write the current epoch's ``dynamics_epoch_<e>.jsonl`` (when ``history_dir`` is set and the
        epoch saw observations); returns its path. Called at every epoch end."""
        if self.history_dir is None or self._history is None or self._history_epoch is None:
            return None
        assert self._history_seen is not None and self._targets is not None
        epoch = self._history_epoch
        seen = self._history_seen.cpu().numpy()
        logits = self._history.cpu().numpy()
        gold = self._targets.cpu().numpy()
        self.history_dir.mkdir(parents=True, exist_ok=True)
        path = self.history_dir / f"dynamics_epoch_{epoch}.jsonl"
        key = f"logits_epoch_{epoch}"
        with path.open("w", encoding="utf-8") as fh:
            for row in np.flatnonzero(seen):
                record = {"guid": int(row), key: [float(v) for v in logits[row]], "gold": int(gold[row])}
                fh.write(json.dumps(record) + "\n")
        self._history_seen.zero_()
        self._history_epoch = None
        return path

    # ------------------------------------------------------------------ read-out
    def result(self) -> SampleDynamics:
        """Every read-out as host numpy arrays (one device-to-host copy per field)."""
        state = self._get_state(self._device or torch.device("cpu"))
        host = {k: v.cpu().numpy() for k, v in state.items()}
        count = host["observations"]
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.where(count > 0, count, np.nan).astype(np.float64)
            confidence = np.where(count > 0, host["prob_mean"], np.nan)
            variability = np.sqrt(np.maximum(host["prob_m2"] / denom, 0.0))
            correctness = host["correct_count"] / denom
            aum = host["margin_sum"] / denom
        final_loss = np.where(count > 0, host["last_loss"], np.nan)
        events = self.tracker.to_numpy(
            [
                "forgetting",
                "learning",
                "switches",
                "never_learned",
                "correct",
                "prediction",
                "learned_epoch",
                "last_forgotten_epoch",
            ]
        )
        return SampleDynamics(
            observations=count.astype(np.int32),
            confidence=confidence.astype(np.float32),
            variability=variability.astype(np.float32),
            correctness=correctness.astype(np.float32),
            aum=aum.astype(np.float32),
            final_loss=final_loss.astype(np.float32),
            first_learned_epoch=host["first_learned"].astype(np.int64),
            learned_epoch=events["learned_epoch"].astype(np.int64),
            last_forgotten_epoch=events["last_forgotten_epoch"].astype(np.int64),
            forgetting=events["forgetting"].astype(np.int32),
            learning=events["learning"].astype(np.int32),
            switches=events["switches"].astype(np.int32),
            never_learned=events["never_learned"].astype(bool),
            correct=events["correct"].astype(bool),
            predicted=events["prediction"].astype(np.int64),
        )

    def __repr__(self) -> str:
        mode = "presentation" if self.wants_batches else "eval"
        return f"DynamicsAccumulator(n={self.n}, num_classes={self.num_classes}, mode={mode!r})"


class _EvalObservation(ObservationCallback):
    """An :class:`ObservationCallback` over the training set whose eval-mode logits feed an accumulator."""

    def __init__(self, source: DataSource, accumulator: DynamicsAccumulator, batch_size: int | None) -> None:
        super().__init__(
            source, "source", every=1, batch_size=batch_size, tracker=accumulator.tracker, name="train"
        )
        self.accumulator = accumulator

    def _update(self, logits: torch.Tensor, idx: torch.Tensor, t: torch.Tensor | None, epoch: int) -> None:
        assert t is not None
        self.accumulator.update(idx, logits, t, epoch=epoch)

    def observe(self, model: nn.Module, *, epoch: int) -> None:
        super().observe(model, epoch=epoch)
        self.accumulator.flush_history()


def eval_observation(
    source: DataSource, accumulator: DynamicsAccumulator, *, batch_size: int | None = None
) -> ObservationCallback:
    """The eval-mode alternative to presentation time: an
    :class:`~forgetting.observe.ObservationCallback` that predicts ``source`` (the training set, with its
    targets) in eval mode, without augmentation, after every epoch, and feeds the logits to
    ``accumulator`` (constructed with ``presentation=False``). Its ``tracker`` is the accumulator's."""
    if accumulator.wants_batches:
        raise ConfigError("eval_observation needs an accumulator made with presentation=False")
    if not source.has_targets:
        raise ConfigError("eval_observation: the training set has no targets")
    return _EvalObservation(source, accumulator, batch_size)
