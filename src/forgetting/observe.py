"""Observing tracked sets while a model trains: :class:`ObservationCallback` (one set) and :class:`Observer`
(what a training loop talks to).

An :class:`ObservationCallback` predicts a tracked set in eval mode, without augmentation, at a cadence, and
feeds an :class:`EventTracker`. The set is in-memory ``uint8`` images or any
:class:`~forgetting.data.source.DataSource` (a user's ``torch`` Dataset, read lazily). Several callbacks can
watch different sets (pool, labeled set, test set) of the same training run::

    pool = ObservationCallback(pool_images, None, every=1, subsample=0.5, name="pool")
    test = ObservationCallback(test_images, test_labels, every=5, name="test")
    fit(model, ..., callbacks=[pool, test])
    pool.tracker.switches  # int32 [N_pool]

A user's own training loop gets an :class:`Observer` and calls it at the end of every epoch (or step)::

    for epoch in range(epochs):
        for x, y in loader:
            ...                      # the user's optimizer, augmentation, AMP, scheduler
            observer.step_end(model)  # only needed for a step cadence
        observer.epoch_end(model)     # observes at the configured cadence, then restores train mode

Presentation-time observers (:class:`forgetting.profile.DynamicsAccumulator`) read each training batch's own
logits instead of running a pass: the loop hands them over with
``observer.batch_end(model, rows, logits, targets)`` after each optimizer step (``rows``: int64 ``[B]``
indices into ``labeled.data``; see :func:`forgetting.profile.with_rows`).
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from forgetting.callbacks import Callback, batch_callbacks
from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.inference import (
    autocast_context,
    default_batch_size,
    eval_mode,
    iter_batches,
    model_device,
    to_input,
)
from forgetting.performance import flush_denormals
from forgetting.settings import DEFAULT_TRACK_PRESET, SUBSAMPLE_MODES, TRACK_PRESETS, SubsampleMode, Unit

__all__ = ["DEFAULT_TRACK_PRESET", "SUBSAMPLE_MODES", "TRACK_PRESETS", "ObservationCallback", "Observer"]

log = logging.getLogger(__name__)

# Cache the tracked images on an accelerator only if they take at most this share of its free memory.
_CACHE_FRACTION = 0.25


def _batch_len(x: Any) -> int:
    """Rows of a batch: a tensor's first dimension, or that of a dict batch's first tensor."""
    if isinstance(x, torch.Tensor):
        return int(x.shape[0])
    return int(next(v for v in x.values() if isinstance(v, torch.Tensor)).shape[0])


def _pass_seed(seed: int, pass_number: int) -> int:
    """A 63-bit seed derived from ``(seed, pass_number)``; distinct passes get independent streams."""
    state = np.random.SeedSequence([seed, pass_number]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ObservationCallback(Callback):
    """Predict a tracked set at a cadence during training and count its learning events.

    Args:
        images: the tracked set: uint8 ``[N, C, H, W]`` images (kept on their device; copied to the model's
            device once if they fit, otherwise per batch), or a
            :class:`~forgetting.data.source.DataSource` (in-memory sources take the same fast path; a
            :class:`~forgetting.data.source.DatasetSource` is read batch by batch through its loader, with its
            eval transform, so memory is bounded by the batch).
        targets: int64 ``[N]`` labels, ``[N, H, W]`` masks, ``None`` (unlabeled: switches only), or
            ``"source"``: the targets the source's batches carry (for a lazy source with masks, say).
        every: observe every ``every`` epochs (``unit="epoch"``) or optimizer steps (``unit="step"``).
        unit: ``"epoch"`` (hook ``on_epoch_end``) or ``"step"`` (hook ``on_step_end``).
        subsample: ``None`` (all rows), a fraction in ``(0, 1]``, or a row count ``>= 1`` per pass.
        subsample_mode: ``"fixed"``: the same seeded subset every pass; ``"rotating"``: a fresh subset per
            pass, drawn from a ``torch.Generator`` seeded with ``(seed, pass_number)``; ``"unstable"``: the
            same budget per pass, spent on the rows that need it most (see :meth:`rows_for_pass`).
        seed: seed of the subsets.
        batch_size: inference batch size; default :func:`forgetting.inference.default_batch_size` of the
            device, the input shape and the model.
        ignore_index: target value that counts nothing (segmentation void label).
        track_epochs: passed to the tracker created here (ignored when ``tracker`` is given).
        first_observation: passed to the tracker created here: ``"exact"`` or the compatibility mode
            ``"reference"`` (see :class:`~forgetting.events.EventTracker`).
        tracker: an existing :class:`EventTracker` of shape ``targets.shape`` (or ``(N, *pred_dims)``).
            Default: one of shape ``targets.shape`` (without targets: ``(N,)``, replaced at the first pass
            by ``(N, H, W)`` if the model predicts per pixel), placed on the model's device at the first
            pass.
        name: a label for logs and reports.
        forward: ``forward(model, x) -> logits`` for a model that is not called as ``model(x)`` (keyword
            inputs, an output object): e.g. ``lambda model, batch: model(**batch).logits``; ``x`` is what the
            source's batches hold (a tensor, or a dict of tensors for a keyword-input source). Default
            ``model(x)``.
        on_logits: called as ``on_logits(idx, logits, targets, epoch)`` with every batch of a pass (rows
            int64 ``[B]``, logits ``[B, K]`` or ``[B, K, H, W]``, targets or ``None``, all on the model's
            device), e.g. a :class:`~forgetting.cartography.CartographyWriter`.

    Attributes:
        passes: observation passes run.
        seconds: total wall time of those passes (CUDA is synchronised once at the end of each pass).
        last_rows: int64 ``[M]`` rows observed by the latest pass (host), or ``None`` when it covered all.

    The tracker receives ``epoch`` = the training epoch of the observation (also with ``unit="step"``,
    where several observations then share one epoch).

    ``subsample_mode="unstable"`` keeps two bool ``[N]`` row flags on the model's device (observed yet;
    prediction changed at the latest observation) and brings them to the host once per pass to choose the
    rows; the passes themselves stay free of host syncs. A row of a pixel tracker counts as changed when
    any of its pixels did.
    """

    def __init__(
        self,
        images: torch.Tensor | DataSource,
        targets: torch.Tensor | Literal["source"] | None = None,
        *,
        every: int = 1,
        unit: Unit = "epoch",
        subsample: float | int | None = None,
        subsample_mode: SubsampleMode = "rotating",
        seed: int = 0,
        batch_size: int | None = None,
        ignore_index: int | None = None,
        track_epochs: bool = True,
        tracker: EventTracker | None = None,
        name: str = "pool",
        first_observation: str = "exact",
        forward: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        on_logits: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, int], None] | None = None,
    ) -> None:
        self.source: DataSource | None = None
        if isinstance(images, DataSource):
            tensors = images.as_tensors()
            if tensors is None:  # a lazy source: read through its loader
                self.source = images
                if targets == "source" and not images.has_targets:
                    raise ConfigError(
                        f"ObservationCallback({name!r}): targets='source' but the source has none"
                    )
            else:
                if targets == "source":
                    targets = tensors[1]
                images = tensors[0]
        elif isinstance(targets, str):
            raise ConfigError(f"ObservationCallback({name!r}): targets='source' needs a DataSource")
        self._source_targets = targets == "source"
        if self._source_targets:
            targets = None
        if self.source is None and (images.dtype != torch.uint8 or images.ndim != 4):  # type: ignore[union-attr]
            raise ConfigError(
                f"ObservationCallback({name!r}) images must be uint8 [N, C, H, W] or a DataSource, "
                f"got {images.dtype} {tuple(images.shape)}"  # type: ignore[union-attr]
            )
        n = len(self.source) if self.source is not None else int(images.shape[0])  # type: ignore[union-attr]
        input_shape = self.source.eval_input_shape if self.source is not None else tuple(images.shape[1:])  # type: ignore[union-attr]
        if targets is not None:
            assert isinstance(targets, torch.Tensor)
            if targets.dtype.is_floating_point or targets.ndim not in (1, 3) or int(targets.shape[0]) != n:
                raise ConfigError(
                    f"ObservationCallback({name!r}) targets must be int64 [N] or [N, H, W] with N={n}, "
                    f"got {targets.dtype} {tuple(targets.shape)}"
                )
            if targets.ndim == 3:  # masks: the inputs' H, W (read only then; a keyword source has none)
                source = self.source
                spatial = tuple(source.input_shape[1:]) if source is not None else tuple(images.shape[2:])  # type: ignore[union-attr]
                if tuple(targets.shape[1:]) != spatial:
                    raise ConfigError(
                        f"ObservationCallback({name!r}) masks {tuple(targets.shape)} do not match the "
                        f"inputs' H, W {spatial}"
                    )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"ObservationCallback every must be an int >= 1, got {every!r}")
        if unit not in ("epoch", "step"):
            raise ConfigError(f"ObservationCallback unit must be 'epoch' or 'step', got {unit!r}")
        if subsample_mode not in SUBSAMPLE_MODES:
            raise ConfigError(
                "ObservationCallback subsample_mode must be one of "
                f"{', '.join(map(repr, SUBSAMPLE_MODES))}, got {subsample_mode!r}"
            )
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ConfigError(f"ObservationCallback batch_size must be >= 1 or None, got {batch_size!r}")
        self.n_rows_per_pass = self._resolve_subsample(subsample, n)
        if tracker is not None:
            if tracker.n != n:
                raise ConfigError(
                    f"ObservationCallback({name!r}) tracker has N={tracker.n} rows but images have N={n}"
                )
            if targets is not None and tracker.shape != tuple(targets.shape):
                raise ConfigError(
                    f"ObservationCallback({name!r}) tracker shape {tracker.shape} does not match targets "
                    f"{tuple(targets.shape)}"
                )
        self.images: torch.Tensor | None = None if self.source is not None else images  # type: ignore[assignment]
        self.n = n
        self._input_shape = input_shape
        self.targets = targets
        self.every = every
        self.unit: Unit = unit
        self.subsample = subsample
        self.subsample_mode: SubsampleMode = subsample_mode
        self.seed = int(seed)
        self.batch_size = batch_size
        self.ignore_index = ignore_index
        self.track_epochs = track_epochs
        self.first_observation = first_observation
        self.name = name
        self.forward = forward
        self.on_logits = on_logits
        self.passes = 0
        self.seconds = 0.0
        self.last_rows: torch.Tensor | None = None
        # Without targets the prediction shape is unknown until the first pass: assume per-sample (N,)
        # and replace this (still unused) tracker if the model turns out to predict per pixel.
        self._provisional = tracker is None and targets is None
        if self._source_targets:  # the source's targets: per-sample labels or masks of the input's H, W
            self._provisional = tracker is None
        self._tracker = (
            tracker
            if tracker is not None
            else EventTracker(
                (n,) if targets is None else tuple(targets.shape),
                ignore_index=ignore_index,
                track_epochs=track_epochs,
                first_observation=first_observation,
            )
        )
        self._fixed_rows: torch.Tensor | None = None
        # subsample_mode="unstable": per-row flags on the model's device, created at the first pass.
        self._ranks_rows = subsample_mode == "unstable" and self.n_rows_per_pass < n
        self._row_seen: torch.Tensor | None = None
        self._row_changed: torch.Tensor | None = None
        self._cache_device: torch.device | None = None
        self._images_dev: torch.Tensor | None = None
        self._targets_dev: torch.Tensor | None = None

    @staticmethod
    def _resolve_subsample(subsample: float | int | None, n: int) -> int:
        """Rows per pass for ``subsample`` over ``n`` rows."""
        if subsample is None:
            return n
        if isinstance(subsample, bool):
            raise ConfigError(
                f"subsample must be None, a fraction in (0, 1] or a count >= 1, got {subsample!r}"
            )
        if isinstance(subsample, numbers.Integral):
            if subsample < 1:
                raise ConfigError(f"subsample count must be >= 1, got {subsample}")
            return min(int(subsample), n)
        if isinstance(subsample, numbers.Real):
            if not 0.0 < float(subsample) <= 1.0:
                raise ConfigError(f"subsample fraction must be in (0, 1], got {subsample}")
            return min(n, max(1, round(float(subsample) * n))) if n else 0
        raise ConfigError(f"subsample must be None, a float fraction or an int count, got {subsample!r}")

    @property
    def tracker(self) -> EventTracker:
        """The tracker this callback feeds.

        Without targets and without a given tracker it has shape ``(N,)`` until the first pass; if the model
        then predicts per pixel (``[B, H, W]``), it is replaced by an ``(N, H, W)`` tracker.
        """
        return self._tracker

    # ------------------------------------------------------------------ hooks
    def on_step_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        if self.unit == "step" and step % self.every == 0:
            self.observe(model, epoch=epoch)

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        if self.unit == "epoch" and epoch % self.every == 0:
            self.observe(model, epoch=epoch)

    # ------------------------------------------------------------------ pass
    def rows_for_pass(self, pass_number: int) -> torch.Tensor | None:
        """Sorted int64 ``[M]`` rows (host) of pass ``pass_number`` (0-based), or ``None`` for all rows.

        ``"rotating"``: a permutation from a generator seeded with ``(seed, pass_number)``;
        ``"fixed"``: the rows of pass 0, every pass;
        ``"unstable"``: the same number of rows, ranked in three tiers: rows never observed first, then
        rows whose prediction changed at their latest observation, then the others; within a tier by a
        uniform key drawn (float64) from a generator seeded with ``(seed, pass_number)``. The first
        ``ceil(N / M)`` passes therefore cover every row once, without replacement; after that the rows that
        keep switching are observed at every pass (as long as they fit the budget) and the rest of the
        budget rotates through the stable rows. This schedule depends on the predictions seen so far, so it
        is defined for the callback's next pass (``pass_number == passes``).
        """
        n = self.n
        m = self.n_rows_per_pass
        if m >= n:
            return None
        if self.subsample_mode == "fixed":
            if self._fixed_rows is None:
                self._fixed_rows = self._draw_rows(0)
            return self._fixed_rows
        if self.subsample_mode == "unstable":
            return self._unstable_rows(pass_number)
        return self._draw_rows(pass_number)

    def _unstable_rows(self, pass_number: int) -> torch.Tensor:
        """Sorted int64 ``[M]`` host rows of an ``"unstable"`` pass (one device-to-host copy of the flags)."""
        g = torch.Generator().manual_seed(_pass_seed(self.seed, pass_number))
        key = torch.rand(self.n, generator=g, dtype=torch.float64)
        if self._row_seen is not None and self._row_changed is not None:
            flags = torch.stack([~self._row_seen, self._row_changed]).cpu()  # the pass's one sync
            key += 2.0 * flags[0] + flags[1]
        else:
            key += 2.0  # nothing observed yet: every row is in the first tier
        return torch.topk(key, self.n_rows_per_pass, sorted=False).indices.sort().values

    def _draw_rows(self, pass_number: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_pass_seed(self.seed, pass_number))
        return torch.randperm(self.n, generator=g)[: self.n_rows_per_pass].sort().values

    def _device_copies(self, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Images and targets on ``device``, cached while the device is unchanged; images None if too big."""
        if self._cache_device == device:
            return self._images_dev, self._targets_dev
        self._images_dev = None
        self._targets_dev = None
        assert self.images is not None
        to_copy = [t for t in (self.images, self.targets) if t is not None and t.device != device]
        nbytes = sum(t.nbytes for t in to_copy)
        fits = True
        if nbytes and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = nbytes <= _CACHE_FRACTION * free
        if fits:
            self._images_dev = self.images.to(device)
            self._targets_dev = None if self.targets is None else self.targets.to(device)
        else:
            log.info(
                "ObservationCallback(%r): %.1f MiB of images/targets do not fit on %s; copying per batch",
                self.name,
                nbytes / 2**20,
                device,
            )
        self._cache_device = device
        return self._images_dev, self._targets_dev

    @flush_denormals()
    def observe(self, model: nn.Module, *, epoch: int) -> None:
        """Run one observation pass now (the hooks call this at the configured cadence).

        Predicts the (subsampled) tracked set in eval mode under ``torch.inference_mode`` (no BatchNorm
        statistics or dropout state change; each module's train flag is restored) and updates the tracker.
        """
        start = time.perf_counter()
        device = model_device(model)
        pass_number = self.passes
        rows = self.rows_for_pass(pass_number)
        rows_dev = None if rows is None else rows.to(device)
        before = self._predictions_before(rows_dev)
        bs = self.batch_size or default_batch_size(device, self._input_shape, model)
        with eval_mode(model), torch.inference_mode(), autocast_context(device):
            if self.source is not None:
                self._observe_source(model, rows, rows_dev, bs, device, epoch)
            else:
                self._observe_tensors(model, rows, rows_dev, bs, device, epoch)
        if self._ranks_rows:
            self._update_row_flags(rows_dev, before, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.passes += 1
        self.last_rows = rows
        self.seconds += time.perf_counter() - start

    def _observe_tensors(
        self,
        model: nn.Module,
        rows: torch.Tensor | None,
        rows_dev: torch.Tensor | None,
        bs: int,
        device: torch.device,
        epoch: int,
    ) -> None:
        """One pass over in-memory images (cached on the device when they fit)."""
        assert self.images is not None
        images_dev, targets_dev = self._device_copies(device)
        m = self.n if rows is None else int(rows.shape[0])
        for sl in iter_batches(m, bs):
            if rows_dev is None:
                idx = torch.arange(sl.start, sl.stop, device=device)
            else:
                idx = rows_dev[sl]
            if images_dev is not None:
                x = to_input(images_dev[sl] if rows is None else images_dev.index_select(0, idx))
                t = None
                if targets_dev is not None:
                    t = targets_dev[sl] if rows is None else targets_dev.index_select(0, idx)
            else:  # too big for the device: gather on the host, copy per batch
                host_idx = None if rows is None else rows[sl]
                x = to_input(self.images[sl] if host_idx is None else self.images[host_idx], device)
                t = None
                if self.targets is not None:
                    t = self.targets[sl] if host_idx is None else self.targets[host_idx]
            self._update(self._logits(model, x), idx, t, epoch)

    def _observe_source(
        self,
        model: nn.Module,
        rows: torch.Tensor | None,
        rows_dev: torch.Tensor | None,
        bs: int,
        device: torch.device,
        epoch: int,
    ) -> None:
        """One pass over a lazy source, batch by batch through its loader (memory bounded by the batch)."""
        assert self.source is not None
        start = 0
        for x, y in self.source.batches(device, bs, rows=rows, targets=self._source_targets):
            b = _batch_len(x)
            idx = (
                torch.arange(start, start + b, device=device)
                if rows_dev is None
                else rows_dev[start : start + b]
            )
            t = y
            if self.targets is not None:
                t = self.targets.index_select(0, idx.to(self.targets.device)).to(device, non_blocking=True)
            self._update(self._logits(model, x), idx, t, epoch)
            start += b

    def _logits(self, model: nn.Module, x: Any) -> torch.Tensor:
        return model(x) if self.forward is None else self.forward(model, x)

    def _update(self, logits: torch.Tensor, idx: torch.Tensor, t: torch.Tensor | None, epoch: int) -> None:
        """Feed one batch's predictions (``logits`` ``[B, K]`` or ``[B, K, H, W]``) to the tracker."""
        preds = logits.argmax(1)
        if self._provisional:
            self._provisional = False
            if tuple(preds.shape[1:]) != self._tracker.shape[1:]:
                self._tracker = EventTracker(
                    (self.n, *preds.shape[1:]),
                    ignore_index=self.ignore_index,
                    track_epochs=self.track_epochs,
                    first_observation=self.first_observation,
                )
        self._tracker.update(idx, preds, t, epoch=epoch)
        if self.on_logits is not None:
            self.on_logits(idx, logits, t, epoch)

    def _predictions_before(self, rows_dev: torch.Tensor | None) -> torch.Tensor | None:
        """``"unstable"`` mode: the stored predictions of the pass's rows before it runs (on the device)."""
        if not self._ranks_rows or self._row_seen is None:
            return None
        return self._tracker.read("prediction", rows_dev)

    def _update_row_flags(
        self, rows_dev: torch.Tensor | None, before: torch.Tensor | None, device: torch.device
    ) -> None:
        """``"unstable"`` mode: mark the pass's rows observed, and changed where a prediction differs.

        Compares stored predictions rather than switch counters, so a saturated counter does not hide a
        change. Runs on the device, without host syncs.
        """
        n = self.n
        if self._row_seen is None or self._row_changed is None:
            self._row_seen = torch.zeros(n, dtype=torch.bool, device=device)
            self._row_changed = torch.zeros(n, dtype=torch.bool, device=device)
        idx = torch.arange(n, device=device) if rows_dev is None else rows_dev
        if before is None:  # first pass: nothing to compare with
            changed = torch.zeros(idx.shape[0], dtype=torch.bool, device=device)
        else:
            after = self._tracker.read("prediction", rows_dev)
            changed = (after != before).reshape(idx.shape[0], -1).any(1).to(device)
            changed &= self._row_seen.index_select(0, idx)
        self._row_changed.index_copy_(0, idx, changed)
        self._row_seen.index_fill_(0, idx, True)

    def __repr__(self) -> str:
        return (
            f"ObservationCallback(name={self.name!r}, n={self.n}, every={self.every}, "
            f"unit={self.unit!r}, rows_per_pass={self.n_rows_per_pass}, mode={self.subsample_mode!r}, "
            f"passes={self.passes}, seconds={self.seconds:.3f})"
        )


class Observer(Callback):
    """What a training loop talks to while a round trains: observes the tracked sets at their cadence.

    A user's training function calls :meth:`epoch_end` after every epoch and, for a step cadence,
    :meth:`step_end` after every optimizer step. Each call counts the epoch (step) and lets every
    :class:`ObservationCallback` observe if its cadence says so: in eval mode, without augmentation, under
    ``torch.inference_mode``, each module's train flag restored afterwards. The built-in
    :func:`~forgetting.training.fit` drives the same object through the :class:`TrainingCallback` hooks, so
    both paths observe identically.

    Args:
        callbacks: the observation callbacks (usually one, on the unlabelled pool); none is valid (a round
            whose strategy needs no dynamics still gets an observer, which then only counts). Any
            :class:`~forgetting.callbacks.Callback` with a ``tracker`` works, e.g. a presentation-time
            :class:`forgetting.profile.DynamicsAccumulator`, fed by :meth:`batch_end`.

    Attributes:
        epochs: epochs reported so far.
        steps: optimizer steps reported so far.
        seconds: wall time spent observing.
    """

    def __init__(self, callbacks: Sequence[ObservationCallback | Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        self._listeners = batch_callbacks(self.callbacks)
        self.epochs = 0
        self.steps = 0
        self.seconds = 0.0
        self._began = False

    @property
    def tracker(self) -> EventTracker | None:
        """The first callback's tracker (the pool's, in an active-learning round), or ``None``."""
        return self.callbacks[0].tracker if self.callbacks else None

    @property
    def wants_batches(self) -> bool:  # type: ignore[override]
        """Whether a callback observes every training batch (:meth:`batch_end` / ``on_batch_end``)."""
        return bool(self._listeners)

    @property
    def observing(self) -> bool:
        """Whether any set is observed (``False``: the calls only count epochs and steps)."""
        return bool(self.callbacks)

    def _timed(self, call: Callable[[Callback], None]) -> None:
        if not self.callbacks:
            return
        t0 = time.perf_counter()
        for cb in self.callbacks:
            call(cb)
        self.seconds += time.perf_counter() - t0

    # ---- the user's loop
    def step_end(self, model: nn.Module) -> None:
        """Call after every optimizer step (needed only for a step cadence, ``unit="step"``)."""
        self._begin(model)
        self.steps += 1
        epoch, step = self.epochs + 1, self.steps
        self._timed(lambda cb: cb.on_step_end(model, epoch=epoch, step=step))

    def batch_end(
        self, model: nn.Module, rows: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> None:
        """Call after every optimizer step with the batch as it was presented, for presentation-time
        observers (no-op without them; counts no step, so call :meth:`step_end` too for a step cadence).

        Args:
            rows: int64 ``[B]`` indices into the training data (``labeled.data``) of the batch's samples.
            logits: ``[B, K]`` from the training forward pass (detached here).
            targets: int64 ``[B]`` labels the loss used.
        """
        if not self._listeners:
            return
        self._begin(model)
        epoch, step = self.epochs + 1, self.steps
        self._batch(model, rows, logits, targets, epoch, step)

    def _batch(
        self,
        model: nn.Module,
        rows: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        epoch: int,
        step: int,
    ) -> None:
        t0 = time.perf_counter()
        with torch.no_grad():
            out = logits.detach()
            for cb in self._listeners:
                cb.on_batch_end(model, rows=rows, logits=out, targets=targets, epoch=epoch, step=step)
        self.seconds += time.perf_counter() - t0

    def epoch_end(self, model: nn.Module) -> None:
        """Call after every training epoch: observes when the epoch cadence says so."""
        self._begin(model)
        self.epochs += 1
        epoch, step = self.epochs, self.steps
        self._timed(lambda cb: cb.on_epoch_end(model, epoch=epoch, step=step))

    def _begin(self, model: nn.Module) -> None:
        if not self._began:
            self._began = True
            self._timed(lambda cb: cb.on_train_begin(model))

    # ---- the TrainingCallback hooks (the built-in fit)
    def on_train_begin(self, model: nn.Module) -> None:
        self._begin(model)

    def on_step_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        self.steps = step
        self._timed(lambda cb: cb.on_step_end(model, epoch=epoch, step=step))

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        self.epochs, self.steps = epoch, step
        self._timed(lambda cb: cb.on_epoch_end(model, epoch=epoch, step=step))

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
        self._batch(model, rows, logits, targets, epoch, step)

    def __repr__(self) -> str:
        return f"Observer(epochs={self.epochs}, steps={self.steps}, callbacks={self.callbacks!r})"
