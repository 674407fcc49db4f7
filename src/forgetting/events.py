"""Per-element learning-dynamics counters: switches, forgetting and learning events (design section 1).

An *element* is a sample (tracker shape ``(N,)``) or a pixel of a sample (shape ``(N, *dims)``, e.g.
``(N, H, W)``). After each observation pass the model's predictions are fed to :meth:`EventTracker.update`
batch by batch. For element ``i`` at its observation ``t``:

- ``switch``: ``pred_t != pred_{t-1}`` (no labels needed);
- ``forgetting``: ``correct_{t-1} and not correct_t`` (labels needed);
- ``learning``: ``not correct_{t-1} and correct_t`` (labels needed).

The first observation of an element only initialises its state and counts nothing (the reference code starts
the previous prediction at class 0, which gives most samples a spurious switch; we do not). For comparisons
with numbers produced by that code, ``first_observation="reference"`` reproduces it: a compatibility mode, not
a method (see :class:`EventTracker`). Elements whose
target equals ``ignore_index`` count nothing and keep their state, not even initialising it. A pass may cover
any subset of rows: the state is per element.

Memory layout (the state lives on one device and is updated without host synchronisation):

=====================  ======================  ==============================================================
field                  dtype                   meaning
=====================  ======================  ==============================================================
``pred``               uint8 (int16/int32)     last prediction; int16 for >= 256 classes
``switches``           uint8 or int16          saturating counter (255 or 32767)
``forgetting``         uint8 or int16          saturating counter
``flags``              uint8                   bits: seen, has_target, last_correct, first_correct
``last_forgotten``     uint8 -> int16 -> int32 index into the host-side epoch table (0 = never)
``learned``            uint8 -> int16 -> int32 index into the host-side epoch table (0 = not learned)
``row_observations``   int32 ``[N]``           observation passes that covered each row
=====================  ======================  ==============================================================

That is 4 bytes per element without epoch tracking and 6 with it (plus 4 bytes per row). ``learning`` is not
stored: correctness transitions alternate, so ``learning = forgetting + last_correct - first_correct``
exactly, and ``ever_correct = first_correct | last_correct | forgetting > 0``. The epoch fields hold indices
into a table of the distinct epochs seen so far; that table is a Python list (epochs arrive as Python ints),
so widening the fields from uint8 to int16 (more than 255 distinct epochs) or int32 (more than 32767) is a
host-side decision that costs no synchronisation.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._io import NUMPY_READ_ERRORS, atomic_savez, describe_numpy_error
from forgetting.exceptions import ConfigError, ForgettingError, UnknownNameError
from forgetting.exports import Table, sample_table, to_frame, write_csv, write_parquet
from forgetting.settings import FIRST_OBSERVATIONS

__all__ = ["FIRST_OBSERVATIONS", "READOUTS", "EventTracker"]

log = logging.getLogger(__name__)

_SEEN = 1  # observed at least once (a valid, non-ignored observation)
_HAS_TARGET = 2  # observed with a target at least once
_LAST_CORRECT = 4  # correct at the latest observation with a target
_FIRST_CORRECT = 8  # correct at the first observation with a target
_KEEP_ON_LABELED = 0xFF & ~(_LAST_CORRECT | _FIRST_CORRECT)

_FORMAT_VERSION = 1


#: Names accepted by :meth:`EventTracker.read`.
READOUTS: tuple[str, ...] = (
    "switches",
    "forgetting",
    "learning",
    "observations",
    "seen",
    "observed_with_targets",
    "correct",
    "ever_correct",
    "never_learned",
    "last_forgotten_epoch",
    "learned_epoch",
    "prediction",
)

_PRED_DTYPES = {torch.uint8: 255, torch.int16: 32767, torch.int32: 2**31 - 1}
_COUNTER_DTYPES = {torch.uint8: 255, torch.int16: 32767}
_DTYPE_NAMES = {torch.uint8: "uint8", torch.int16: "int16", torch.int32: "int32"}
_DTYPES_BY_NAME = {v: k for k, v in _DTYPE_NAMES.items()}


def _epoch_dtype(n_epochs: int) -> torch.dtype:
    """The narrowest field dtype holding indices ``0..n_epochs`` (0 is reserved for 'none')."""
    if n_epochs <= 255:
        return torch.uint8
    if n_epochs <= 32767:
        return torch.int16
    return torch.int32


def _pred_dtype_for(num_classes: int) -> torch.dtype:
    if num_classes <= 256:
        return torch.uint8
    if num_classes <= 32768:
        return torch.int16
    return torch.int32


class EventTracker:
    """Counts switches, forgetting and learning events per element, on one device, without host syncs.

    Args:
        shape: ``(N,)`` for N samples or ``(N, *dims)`` (e.g. ``(N, H, W)``) for pixels; N is the number of
            rows that ``update`` indexes.
        device: device of the state. ``None``: the device of the first ``preds`` passed to :meth:`update`.
        ignore_index: target value whose elements count nothing and keep their state (e.g. 255 or -1).
        track_epochs: keep ``last_forgotten_epoch`` and ``learned_epoch`` (2 more bytes per element, or 4/8
            once more than 255/32767 distinct epochs were seen).
        pred_dtype: storage dtype of the last prediction: ``torch.uint8`` (class ids 0..255), ``torch.int16``
            (0..32767) or ``torch.int32``. Ignored when ``num_classes`` is given.
        num_classes: if given, picks ``pred_dtype``: uint8 up to 256 classes, int16 up to 32768, else int32.
        counter_dtype: ``torch.uint8`` (saturates at 255, the default) or ``torch.int16`` (saturates at
            32767) for the switch and forgetting counters. Counters saturate; they never wrap.
        first_observation: ``"exact"`` (default): an element's first observation only initialises its
            state. ``"reference"``: a compatibility mode that reproduces the tracker of the authors' code
            (olivesgatech/gauss, ``training/classification/classificationtracker.py``), whose previous
            prediction and previous correctness start as zeros: the first prediction counts a switch when
            it is not class 0, and (as there) a first observation never counts a forgetting event. The
            reference has no learning counter; here ``learning`` then counts a correct first observation
            as a learning event (incorrect -> correct from the zero start). Use it only to compare with
            numbers produced by that code; the counts are biased towards samples not predicted as class 0.

    Mixing updates with and without targets is allowed: ``switches`` counts on every update, while the
    correctness state (and so ``forgetting``, ``learning``, ``ever_correct``, the epoch fields) only changes
    on updates that carry targets. The first update *with targets* of an element initialises its correctness
    and counts no forgetting or learning event. ``ignore_index`` only applies to updates with targets.

    ``observations`` is a per-row pass counter combined with the per-element ``seen`` bit. It is exact when
    the ignore mask of each element is the same in every pass (the usual case: fixed targets, observation
    without augmentation). An element ignored in some passes and valid in others reports its row's count.

    Class ids must fit ``pred_dtype`` (non-negative, <= 255 for uint8). The check runs on the device inside
    ``update`` and is reported (as :class:`~forgetting.exceptions.ConfigError`) at the next read-out, so the
    hot path never synchronises.

    Example:
        >>> tracker = EventTracker((3,))
        >>> idx = torch.arange(3)
        >>> tracker.update(idx, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), epoch=1)
        >>> tracker.update(idx, torch.tensor([1, 1, 1]), torch.tensor([0, 1, 1]), epoch=2)
        >>> tracker.switches.tolist(), tracker.forgetting.tolist(), tracker.learning.tolist()
        ([1, 0, 1], [1, 0, 0], [0, 0, 1])
    """

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        device: torch.device | str | None = None,
        ignore_index: int | None = None,
        track_epochs: bool = True,
        pred_dtype: torch.dtype = torch.uint8,
        num_classes: int | None = None,
        counter_dtype: torch.dtype = torch.uint8,
        first_observation: str = "exact",
    ) -> None:
        shape_t = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if len(shape_t) == 0 or any(s < 0 for s in shape_t):
            raise ConfigError(
                f"EventTracker shape must be (N,) or (N, *dims) with non-negative sizes, got {shape_t}"
            )
        if num_classes is not None:
            if num_classes < 1:
                raise ConfigError(f"EventTracker num_classes must be >= 1, got {num_classes}")
            pred_dtype = _pred_dtype_for(num_classes)
        if pred_dtype not in _PRED_DTYPES:
            raise ConfigError(
                "EventTracker pred_dtype must be one of torch.uint8, torch.int16, torch.int32, "
                f"got {pred_dtype}"
            )
        if counter_dtype not in _COUNTER_DTYPES:
            raise ConfigError(
                f"EventTracker counter_dtype must be torch.uint8 or torch.int16, got {counter_dtype}"
            )
        if first_observation not in FIRST_OBSERVATIONS:
            raise ConfigError(
                f"EventTracker first_observation must be one of {list(FIRST_OBSERVATIONS)}, "
                f"got {first_observation!r}"
            )
        self.first_observation = first_observation
        self._reference = first_observation == "reference"
        self.shape: tuple[int, ...] = shape_t
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.track_epochs = bool(track_epochs)
        self.pred_dtype = pred_dtype
        self.counter_dtype = counter_dtype
        self.counter_max = _COUNTER_DTYPES[counter_dtype]
        self._pred_max = _PRED_DTYPES[pred_dtype]
        self._device: torch.device | None = None if device is None else torch.device(device)
        self._state: dict[str, torch.Tensor] | None = None
        self._epochs: list[int] = []
        self._epoch_pos: dict[int, int] = {}
        self._epoch_table: torch.Tensor | None = None
        self._epoch_dtype = torch.uint8
        self._calls = 0
        self._bad_pred: torch.Tensor | None = None  # 0-d bool on the device: a class id did not fit
        self._bad_index: torch.Tensor | None = None  # 0-d bool on the device: a row id was out of range

    # ------------------------------------------------------------------ allocation
    @property
    def n(self) -> int:
        """N, the number of rows."""
        return self.shape[0]

    @property
    def numel(self) -> int:
        """Number of tracked elements (product of ``shape``)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def device(self) -> torch.device | None:
        """Device of the state; ``None`` until fixed (by ``device=``, the first update, or :meth:`to`)."""
        return self._device

    @property
    def calls(self) -> int:
        """Number of :meth:`update` calls since construction or :meth:`reset`."""
        return self._calls

    @property
    def epochs_seen(self) -> list[int]:
        """The distinct epochs observed so far, in order of first appearance (the host-side table)."""
        return list(self._epochs)

    def _field_specs(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            "pred": (self.shape, self.pred_dtype),
            "switches": (self.shape, self.counter_dtype),
            "forgetting": (self.shape, self.counter_dtype),
            "flags": (self.shape, torch.uint8),
            "row_observations": ((self.n,), torch.int32),
        }
        if self.track_epochs:
            specs["last_forgotten"] = (self.shape, self._epoch_dtype)
            specs["learned"] = (self.shape, self._epoch_dtype)
        return specs

    def _allocate(self, device: torch.device) -> dict[str, torch.Tensor]:
        # Allocation may happen inside a caller's inference_mode; the state must stay a normal tensor.
        with torch.inference_mode(False):
            state = {
                name: torch.zeros(shape, dtype=dtype, device=device)
                for name, (shape, dtype) in self._field_specs().items()
            }
        self._bad_pred = None
        self._bad_index = None
        return state

    def _get_state(self) -> dict[str, torch.Tensor]:
        """The state, allocated (zeros) on the fixed device or, if none is fixed yet, on the CPU."""
        if self._state is None:
            self._state = self._allocate(self._device or torch.device("cpu"))
        return self._state

    @property
    def nbytes(self) -> int:
        """Total bytes of the state tensors (whether or not they are allocated yet)."""
        total = 0
        for shape, dtype in self._field_specs().values():
            total += int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
        return total

    @property
    def bytes_per_element(self) -> float:
        """``nbytes / numel``: 4 (+ 4/row size) without epochs, 6 with uint8 epoch indices."""
        return self.nbytes / max(self.numel, 1)

    # ------------------------------------------------------------------ epochs
    def _epoch_index(self, epoch: int) -> int:
        """Index (>= 1) of ``epoch`` in the host-side table; grows the table and widens fields as needed."""
        pos = self._epoch_pos.get(epoch)
        if pos is not None:
            return pos
        self._epochs.append(epoch)
        pos = len(self._epochs)
        self._epoch_pos[epoch] = pos
        self._epoch_table = None
        needed = _epoch_dtype(pos)
        if needed != self._epoch_dtype:
            log.info("EventTracker: %d distinct epochs, widening epoch fields to %s", pos, needed)
            self._epoch_dtype = needed
            if self._state is not None:
                with torch.inference_mode(False):
                    for name in ("last_forgotten", "learned"):
                        self._state[name] = self._state[name].to(needed)
        return pos

    def _table(self, device: torch.device) -> torch.Tensor:
        """int64 ``[1 + E]`` on ``device``: ``[-1, epoch_1, ..., epoch_E]``."""
        if self._epoch_table is None or self._epoch_table.device != device:
            self._epoch_table = torch.tensor([-1, *self._epochs], dtype=torch.int64, device=device)
        return self._epoch_table

    # ------------------------------------------------------------------ update
    def update(
        self,
        indices: torch.Tensor,
        preds: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        epoch: int | None = None,
    ) -> None:
        """Feed one batch of one observation pass.

        Args:
            indices: int64 ``[B]`` rows into N, unique within the call (duplicates give undefined results).
            preds: integer ``[B, *dims]`` predicted class ids (any integer dtype, any device).
            targets: integer ``[B, *dims]`` true class ids, or ``None`` (unlabeled: only switches count).
            epoch: training epoch of this observation (int >= 0), stored by the epoch read-outs. ``None``
                uses the number of previous ``update`` calls instead, so pass it when a pass spans several
                calls.

        Runs entirely on the state device: no ``.item()``, no boolean-mask indexing, no host sync. Row ids
        outside ``[0, N)`` raise a :class:`ConfigError` at once when the state is on the CPU (before anything
        is updated); on an accelerator (where checking would cost a sync) they are clamped, flagged on the
        device, and the next read-out raises the error, as for class ids that do not fit ``pred_dtype``.
        """
        if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise ConfigError(
                f"indices must be integer row ids [B] (int64), got {indices.dtype} {tuple(indices.shape)}"
            )
        b = int(indices.shape[0])
        expected = (b, *self.shape[1:])
        if tuple(preds.shape) != expected:
            raise ConfigError(
                f"preds must have shape [B, *dims] = {expected} for a tracker of shape {self.shape}, "
                f"got {tuple(preds.shape)}"
            )
        if preds.dtype.is_floating_point or preds.dtype.is_complex or preds.dtype == torch.bool:
            raise ConfigError(f"preds must hold integer class ids (e.g. logits.argmax(1)), got {preds.dtype}")
        if targets is not None:
            if tuple(targets.shape) != expected:
                raise ConfigError(
                    f"targets must have the shape of preds {expected}, got {tuple(targets.shape)}"
                )
            if targets.dtype.is_floating_point or targets.dtype.is_complex:
                raise ConfigError(f"targets must hold integer class ids, got {targets.dtype}")
        if epoch is None:
            epoch = self._calls
        elif isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ConfigError(f"epoch must be an int >= 0 or None, got {epoch!r}")
        epoch = int(epoch)

        if self._device is None:
            self.to(preds.device)
        device = self._device
        assert device is not None
        state = self._get_state()
        e_idx = self._epoch_index(epoch) if self.track_epochs else 0
        self._calls += 1
        if preds.numel() == 0:
            return
        with torch.no_grad():
            try:
                self._update(state, device, indices, preds, targets, e_idx)
            except (IndexError, RuntimeError) as exc:  # CPU row ids out of range (read before any write)
                if "index" not in str(exc) and "out of" not in str(exc):
                    raise
                self._calls -= 1
                raise ConfigError(
                    f"indices must be row ids in [0, {self.n}) of a tracker of shape {self.shape} ({exc}); "
                    "nothing was updated"
                ) from None

    def _update(
        self,
        state: dict[str, torch.Tensor],
        device: torch.device,
        indices: torch.Tensor,
        preds: torch.Tensor,
        targets: torch.Tensor | None,
        e_idx: int,
    ) -> None:
        idx = indices.to(device=device, dtype=torch.int64, non_blocking=True)
        if device.type != "cpu":  # an out-of-range index would be a device-side assert: flag, clamp, go on
            lo, hi = torch.aminmax(idx)
            bad_idx = (lo < 0) | (hi >= self.n)
            self._bad_index = bad_idx if self._bad_index is None else self._bad_index | bad_idx
            idx = idx.clamp(0, max(self.n - 1, 0))
        p = preds.to(device, non_blocking=True)
        if p.dtype != torch.uint8 or self.pred_dtype != torch.uint8:
            lo, hi = torch.aminmax(p)
            bad = (lo < 0) | (hi > self._pred_max)
            self._bad_pred = bad if self._bad_pred is None else self._bad_pred | bad
        p_s = p.to(self.pred_dtype)

        old_pred = state["pred"].index_select(0, idx)
        old_flags = state["flags"].index_select(0, idx)
        seen = (old_flags & _SEEN) != 0
        if self._reference:  # as the authors' tracker: compare with a stored prediction that starts at 0
            seen = torch.ones_like(seen)
        changed = p_s != old_pred

        if targets is None:
            switch = seen & changed
            new_flags = old_flags | _SEEN
            new_pred = p_s
        else:
            t = targets.to(device=device, dtype=torch.int64, non_blocking=True)
            correct = p.to(torch.int64) == t
            has_t = (old_flags & _HAS_TARGET) != 0
            last_c = (old_flags & _LAST_CORRECT) != 0
            if self.ignore_index is None:
                valid = None
                switch = seen & changed
            else:
                valid = t != self.ignore_index
                switch = seen & changed & valid
            forget = has_t & last_c & ~correct
            if valid is not None:
                forget &= valid
            c8 = correct.to(torch.uint8)
            # first_correct is set only at the first observation with a target
            first_bit = torch.where(has_t, old_flags & _FIRST_CORRECT, c8 * _FIRST_CORRECT)
            new_flags = (old_flags & _KEEP_ON_LABELED) | (
                _SEEN | _HAS_TARGET | (c8 * _LAST_CORRECT) | first_bit
            )
            new_pred = p_s
            if valid is not None:
                new_flags = torch.where(valid, new_flags, old_flags)
                new_pred = torch.where(valid, p_s, old_pred)
            fg = state["forgetting"].index_select(0, idx)
            fg = torch.where(forget & (fg < self.counter_max), fg + 1, fg)
            state["forgetting"].index_copy_(0, idx, fg)
            if self.track_epochs:
                lf = state["last_forgotten"].index_select(0, idx)
                state["last_forgotten"].index_copy_(0, idx, torch.where(forget, e_idx, lf))
                ln = state["learned"].index_select(0, idx)
                # correct now and not correct before (or first labeled observation): learned now;
                # incorrect now: not learned; otherwise (still correct, or ignored): unchanged.
                newly = correct & ~(has_t & last_c)
                upd = torch.where(newly, e_idx, torch.where(correct, ln, 0))
                if valid is not None:
                    upd = torch.where(valid, upd, ln)
                state["learned"].index_copy_(0, idx, upd.to(ln.dtype))

        sw = state["switches"].index_select(0, idx)
        state["switches"].index_copy_(0, idx, torch.where(switch & (sw < self.counter_max), sw + 1, sw))
        state["pred"].index_copy_(0, idx, new_pred)
        state["flags"].index_copy_(0, idx, new_flags)
        state["row_observations"].index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))

    # ------------------------------------------------------------------ read-outs
    def _check_preds(self) -> None:
        if self._bad_index is not None and bool(self._bad_index):
            raise ConfigError(
                f"EventTracker.update received row ids outside [0, {self.n}) for a tracker of shape "
                f"{self.shape}; its counts are wrong. Pass indices into the tracked set and rerun."
            )
        if self._bad_pred is not None and bool(self._bad_pred):
            raise ConfigError(
                f"EventTracker received class ids outside [0, {self._pred_max}], which pred_dtype="
                f"{_DTYPE_NAMES[self.pred_dtype]} cannot store; its counts are wrong. Construct the tracker "
                "with num_classes=<number of classes> (or pred_dtype=torch.int16) and rerun."
            )

    def read(self, name: str, rows: torch.Tensor | None = None) -> torch.Tensor:
        """One read-out, for all rows or for ``rows`` (int64 ``[R]``), on the state device.

        Args:
            name: one of :data:`READOUTS`.
            rows: optional row indices; the result then has shape ``[R, *dims]``.

        Returns:
            ``switches``, ``forgetting``, ``learning``, ``observations``: int32 counts;
            ``prediction``: int64 last stored prediction (0 where never observed);
            ``seen``, ``observed_with_targets``, ``correct`` (at the latest labeled observation),
            ``ever_correct``, ``never_learned``: bool;
            ``last_forgotten_epoch``, ``learned_epoch``: int64, -1 where undefined.
        """
        if name not in READOUTS:
            raise UnknownNameError(f"unknown EventTracker read-out {name!r}; known: {', '.join(READOUTS)}")
        self._check_preds()
        state = self._get_state()

        def field(key: str) -> torch.Tensor:
            t = state[key]
            if rows is None:
                return t
            return t.index_select(0, rows.to(device=t.device, dtype=torch.int64))

        def bit(mask: int) -> torch.Tensor:
            return (field("flags") & mask) != 0

        if name == "switches":
            return field("switches").to(torch.int32)
        if name == "forgetting":
            return field("forgetting").to(torch.int32)
        if name == "learning":
            f = field("forgetting").to(torch.int32)
            flags = field("flags")
            learn = f + ((flags & _LAST_CORRECT) != 0).to(torch.int32)
            if not self._reference:  # reference mode starts from "incorrect": a correct start is learning
                learn -= ((flags & _FIRST_CORRECT) != 0).to(torch.int32)
            return learn.clamp_(0, self.counter_max)
        if name == "prediction":
            return field("pred").to(torch.int64)
        if name == "seen":
            return bit(_SEEN)
        if name == "observed_with_targets":
            return bit(_HAS_TARGET)
        if name == "correct":
            return bit(_LAST_CORRECT)
        if name == "observations":
            per_row = field("row_observations").view(-1, *([1] * (len(self.shape) - 1)))
            return torch.where(bit(_SEEN), per_row, 0).to(torch.int32)
        if name in ("ever_correct", "never_learned"):
            ever = bit(_FIRST_CORRECT | _LAST_CORRECT) | (field("forgetting") > 0)
            return ever if name == "ever_correct" else bit(_HAS_TARGET) & ~ever
        # epoch read-outs
        if not self.track_epochs:
            raise ConfigError(
                f"{name} needs epoch tracking; construct the EventTracker with track_epochs=True"
            )
        key = "last_forgotten" if name == "last_forgotten_epoch" else "learned"
        f = field(key)
        return self._table(f.device)[f.to(torch.int64)]

    @property
    def switches(self) -> torch.Tensor:
        """int32 ``shape``: prediction changes between consecutive observations (saturating)."""
        return self.read("switches")

    @property
    def forgetting(self) -> torch.Tensor:
        """int32 ``shape``: correct -> incorrect transitions (saturating)."""
        return self.read("forgetting")

    @property
    def learning(self) -> torch.Tensor:
        """int32 ``shape``: incorrect -> correct transitions.

        Derived exactly as ``forgetting + last_correct - first_correct`` (``forgetting + last_correct`` with
        ``first_observation="reference"``). Once ``forgetting`` saturates the
        result is within one of the saturated count, clamped to ``counter_max``.
        """
        return self.read("learning")

    @property
    def observations(self) -> torch.Tensor:
        """int32 ``shape``: valid observations per element (exact under a fixed ignore mask)."""
        return self.read("observations")

    @property
    def seen(self) -> torch.Tensor:
        """bool ``shape``: observed at least once."""
        return self.read("seen")

    @property
    def observed_with_targets(self) -> torch.Tensor:
        """bool ``shape``: observed at least once with a (non-ignored) target."""
        return self.read("observed_with_targets")

    @property
    def ever_correct(self) -> torch.Tensor:
        """bool ``shape``: predicted correctly at some labeled observation."""
        return self.read("ever_correct")

    @property
    def never_learned(self) -> torch.Tensor:
        """bool ``shape``: observed with targets at least once and never predicted correctly."""
        return self.read("never_learned")

    @property
    def last_forgotten_epoch(self) -> torch.Tensor:
        """int64 ``shape``: epoch of the latest forgetting event, -1 if never forgotten."""
        return self.read("last_forgotten_epoch")

    @property
    def learned_epoch(self) -> torch.Tensor:
        """int64 ``shape``: epoch from which the element stayed correct up to its latest labeled observation.

        -1 if currently incorrect or never observed with a target.
        """
        return self.read("learned_epoch")

    def to_numpy(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Read-outs as host numpy arrays (one transfer per name), e.g. for ``RoundRecord.dynamics``.

        Default names: switches, forgetting, learning, observations, ever_correct, never_learned, and the two
        epoch read-outs when ``track_epochs``.
        """
        if names is None:
            names = ["switches", "forgetting", "learning", "observations", "ever_correct", "never_learned"]
            if self.track_epochs:
                names += ["last_forgotten_epoch", "learned_epoch"]
        return {name: self.read(name).cpu().numpy() for name in names}

    # ------------------------------------------------------------------ exports
    def table(self, ids: Sequence[Any] | np.ndarray | None = None, *, per: str | None = None) -> Table:
        """The per-sample table: column name -> host array, one row per sample (one per pixel, or a
        per-sample summary, for a pixel tracker with ``per="pixel"`` / ``per="sample"``).

        Columns: ``sample_id`` (``ids``, default the row index), ``observations``, ``switches``,
        ``forgetting``, ``learning``, ``never_learned``, ``ever_correct``, ``correct``,
        ``observed_with_targets``, ``last_forgotten_epoch`` and ``learned_epoch`` (with epoch tracking),
        ``prediction``; see :mod:`forgetting.exports`.
        """
        return sample_table(self, ids, per=per)  # type: ignore[arg-type]

    def to_frame(self, ids: Sequence[Any] | np.ndarray | None = None, *, per: str | None = None) -> Any:
        """:meth:`table` as a ``pandas.DataFrame`` (needs pandas: ``pip install 'forgetting[pandas]'``)."""
        return to_frame(self.table(ids, per=per))

    def to_csv(
        self,
        path: str | os.PathLike[str],
        ids: Sequence[Any] | np.ndarray | None = None,
        *,
        per: str | None = None,
    ) -> Path:
        """Write :meth:`table` as CSV at ``path`` (standard library only; text ids that a spreadsheet would
        evaluate get a leading ``'``). Returns the path."""
        return write_csv(self.table(ids, per=per), path)

    def to_parquet(
        self,
        path: str | os.PathLike[str],
        ids: Sequence[Any] | np.ndarray | None = None,
        *,
        per: str | None = None,
    ) -> Path:
        """Write :meth:`table` as Parquet at ``path`` (needs pyarrow: ``pip install
        'forgetting[parquet]'``). Returns the path."""
        return write_parquet(self.table(ids, per=per), path)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "version": _FORMAT_VERSION,
            "shape": list(self.shape),
            "ignore_index": self.ignore_index,
            "track_epochs": self.track_epochs,
            "pred_dtype": _DTYPE_NAMES[self.pred_dtype],
            "counter_dtype": _DTYPE_NAMES[self.counter_dtype],
            "first_observation": self.first_observation,
            "epochs": list(self._epochs),
            "calls": self._calls,
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors (references to the live state, on its device) plus metadata, incl. the epoch table."""
        self._check_preds()
        return {"meta": self._meta(), "tensors": dict(self._get_state())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (tensors may be on any device; they are copied to this one).

        The shape, tracking options and dtypes must match this tracker.
        """
        meta = state.get("meta")
        tensors = state.get("tensors")
        if not isinstance(meta, dict) or not isinstance(tensors, dict):
            raise ConfigError(
                "EventTracker state must be a dict with 'meta' and 'tensors' (see state_dict())"
            )
        if meta.get("version") != _FORMAT_VERSION:
            raise ConfigError(
                f"EventTracker state version {meta.get('version')!r} is not supported "
                f"(this version reads {_FORMAT_VERSION})"
            )
        mine = self._meta()
        meta = {"first_observation": "exact", **meta}  # files written before the option existed
        for key in (
            "shape",
            "ignore_index",
            "track_epochs",
            "pred_dtype",
            "counter_dtype",
            "first_observation",
        ):
            if meta.get(key) != mine[key]:
                raise ConfigError(
                    f"EventTracker state has {key}={meta.get(key)!r} but this tracker has {mine[key]!r}; "
                    "construct the tracker with the same options or use EventTracker.load()"
                )
        epochs = [int(e) for e in meta["epochs"]]
        self._epochs = epochs
        self._epoch_pos = {e: i + 1 for i, e in enumerate(epochs)}
        self._epoch_table = None
        self._epoch_dtype = _epoch_dtype(len(epochs))
        self._calls = int(meta["calls"])
        device = self._device or torch.device("cpu")
        specs = self._field_specs()
        if set(tensors) != set(specs):
            raise ConfigError(f"EventTracker state holds tensors {sorted(tensors)}, expected {sorted(specs)}")
        new: dict[str, torch.Tensor] = {}
        with torch.inference_mode(False):
            for name, (shape, dtype) in specs.items():
                t = torch.as_tensor(tensors[name])
                if tuple(t.shape) != shape:
                    raise ConfigError(
                        f"EventTracker state tensor {name!r} has shape {tuple(t.shape)}, expected {shape}"
                    )
                new[name] = t.to(device=device, dtype=dtype, copy=True)
        self._state = new
        self._bad_pred = None
        self._bad_index = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state to ``path`` as a compressed ``.npz``, atomically (temp file + ``os.replace``).

        The file is written at exactly ``path`` (no suffix is added). Returns the path.
        """
        sd = self.state_dict()
        arrays = {name: t.detach().cpu().numpy() for name, t in sd["tensors"].items()}
        arrays["meta"] = np.array(json.dumps(sd["meta"]))
        return atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str | None = None) -> EventTracker:
        """Read a tracker written by :meth:`save`, onto ``device`` (default: CPU, device not fixed)."""
        path = Path(path)
        if not path.is_file():
            raise ForgettingError(f"EventTracker file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except NUMPY_READ_ERRORS as exc:
            raise ForgettingError(
                f"{path} is not an EventTracker .npz file: {describe_numpy_error(exc)}"
            ) from None
        if "meta" not in arrays:
            raise ForgettingError(f"{path} is not an EventTracker .npz file: no 'meta' entry")
        try:
            meta = json.loads(str(arrays.pop("meta")))
        except ValueError as exc:
            raise ForgettingError(
                f"{path}: the EventTracker metadata ('meta') is not valid JSON ({exc}); the file is damaged "
                "or was not written by EventTracker.save"
            ) from None
        try:
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            tracker = cls(
                tuple(meta["shape"]),
                device=device,
                ignore_index=meta["ignore_index"],
                track_epochs=meta["track_epochs"],
                pred_dtype=_DTYPES_BY_NAME[meta["pred_dtype"]],
                counter_dtype=_DTYPES_BY_NAME[meta["counter_dtype"]],
                first_observation=meta.get("first_observation", "exact"),
            )
        except ConfigError as exc:
            raise ForgettingError(f"{path}: the EventTracker metadata is invalid: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ForgettingError(
                f"{path}: the EventTracker metadata lacks or mangles {exc}; the file is damaged or was not "
                "written by EventTracker.save"
            ) from None
        tracker.load_state_dict(
            {"meta": meta, "tensors": {k: torch.from_numpy(v) for k, v in arrays.items()}}
        )
        return tracker

    # ------------------------------------------------------------------ misc
    def reset(self) -> None:
        """Forget everything observed (zero state, empty epoch table); keeps shape, options and device."""
        self._epochs = []
        self._epoch_pos = {}
        self._epoch_table = None
        self._epoch_dtype = torch.uint8
        self._calls = 0
        self._bad_pred = None
        self._bad_index = None
        if self._state is not None:
            self._state = self._allocate(next(iter(self._state.values())).device)

    def to(self, device: torch.device | str) -> EventTracker:
        """Move the state to ``device`` and fix it there. Returns ``self``."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self._device = device
        if self._state is not None:
            with torch.inference_mode(False):
                self._state = {k: v.to(device) for k, v in self._state.items()}
        if self._bad_pred is not None:
            self._bad_pred = self._bad_pred.to(device)
        if self._bad_index is not None:
            self._bad_index = self._bad_index.to(device)
        self._epoch_table = None
        return self

    def __repr__(self) -> str:
        return (
            f"EventTracker(shape={self.shape}, device={self._device}, ignore_index={self.ignore_index}, "
            f"track_epochs={self.track_epochs}, pred_dtype={_DTYPE_NAMES[self.pred_dtype]}, "
            f"counter_dtype={_DTYPE_NAMES[self.counter_dtype]}, "
            f"first_observation={self.first_observation!r}, calls={self._calls}, "
            f"epochs={len(self._epochs)}, nbytes={self.nbytes})"
        )
