"""EventTracker: the event semantics of design section 1, pinned by hand-made sequences and a reference."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetting.events import READOUTS, EventTracker
from forgetting.exceptions import ConfigError, ForgettingError, UnknownNameError


def t64(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def feed(
    tracker: EventTracker, preds: list[int], targets: list[int] | None, epoch: int | None = None
) -> None:
    """One full pass over a sample tracker."""
    n = len(preds)
    tracker.update(torch.arange(n), t64(*preds), None if targets is None else t64(*targets), epoch=epoch)


# ---------------------------------------------------------------------------------------------- hand-made
def test_first_observation_counts_nothing_and_no_spurious_switch() -> None:
    tr = EventTracker((4,))
    feed(tr, [3, 0, 1, 2], [3, 1, 1, 0], epoch=0)
    assert tr.switches.tolist() == [0, 0, 0, 0]  # the reference code would count 3 switches here
    assert tr.forgetting.tolist() == [0, 0, 0, 0]
    assert tr.learning.tolist() == [0, 0, 0, 0]
    assert tr.observations.tolist() == [1, 1, 1, 1]
    assert tr.ever_correct.tolist() == [True, False, True, False]
    assert tr.never_learned.tolist() == [False, True, False, True]
    assert tr.learned_epoch.tolist() == [0, -1, 0, -1]
    assert tr.last_forgotten_epoch.tolist() == [-1, -1, -1, -1]


def test_forgetting_switch_and_learning_are_distinct_events() -> None:
    tr = EventTracker((1,))
    target = [2]
    seq = [2, 0, 1, 2, 2, 0]  # correct, wrong, wrong(other class), correct, correct, wrong
    for e, p in enumerate(seq):
        feed(tr, [p], target, epoch=e)
    # switches: 2->0, 0->1, 1->2, 2->0 = 4; forgetting: epochs 1 and 5; learning: epoch 3
    assert tr.switches.tolist() == [4]
    assert tr.forgetting.tolist() == [2]
    assert tr.learning.tolist() == [1]
    assert tr.last_forgotten_epoch.tolist() == [5]
    assert tr.learned_epoch.tolist() == [-1]  # currently incorrect
    assert tr.ever_correct.tolist() == [True]
    assert tr.observations.tolist() == [6]


def test_wrong_to_wrong_class_change_is_a_switch_but_not_forgetting() -> None:
    tr = EventTracker((2,))
    feed(tr, [1, 0], [0, 0])
    feed(tr, [2, 0], [0, 0])
    feed(tr, [3, 0], [0, 0])
    assert tr.switches.tolist() == [2, 0]
    assert tr.forgetting.tolist() == [0, 0]
    assert tr.learning.tolist() == [0, 0]
    assert tr.never_learned.tolist() == [True, False]


def test_switches_count_without_targets_and_correctness_only_with_targets() -> None:
    tr = EventTracker((2,))
    feed(tr, [0, 1], None, epoch=0)  # unlabeled: initialises predictions only
    assert tr.observed_with_targets.tolist() == [False, False]
    assert tr.never_learned.tolist() == [False, False]  # never observed with a target: not "never learned"
    feed(tr, [1, 1], [1, 0], epoch=1)  # first labeled observation: a switch for row 0, no forgetting
    assert tr.switches.tolist() == [1, 0]
    assert tr.forgetting.tolist() == [0, 0]
    assert tr.learning.tolist() == [0, 0]
    feed(tr, [0, 0], None, epoch=2)  # unlabeled again: switches count, correctness state untouched
    assert tr.switches.tolist() == [2, 1]
    assert tr.forgetting.tolist() == [0, 0]
    assert tr.read("correct").tolist() == [True, False]
    feed(tr, [0, 0], [1, 0], epoch=3)  # row 0 was correct at its last labeled observation: forgotten
    assert tr.forgetting.tolist() == [1, 0]
    assert tr.learning.tolist() == [0, 1]
    assert tr.switches.tolist() == [2, 1]
    assert tr.last_forgotten_epoch.tolist() == [3, -1]
    assert tr.learned_epoch.tolist() == [-1, 3]
    assert tr.observations.tolist() == [4, 4]


def test_ignore_index_counts_nothing_and_does_not_initialise() -> None:
    tr = EventTracker((1, 1, 3), ignore_index=255)
    idx = t64(0)
    tr.update(idx, t64(1, 1, 1).view(1, 1, 3), t64(255, 1, 1).view(1, 1, 3), epoch=0)
    assert tr.seen.view(-1).tolist() == [False, True, True]
    assert tr.observations.view(-1).tolist() == [0, 1, 1]
    # pixel 0 now valid: this is its first observation, so the changed prediction is not a switch
    tr.update(idx, t64(2, 0, 1).view(1, 1, 3), t64(2, 1, 1).view(1, 1, 3), epoch=1)
    assert tr.switches.view(-1).tolist() == [0, 1, 0]
    assert tr.forgetting.view(-1).tolist() == [0, 1, 0]
    # ignored again: prediction, counts and correctness stay as they were
    tr.update(idx, t64(0, 1, 0).view(1, 1, 3), t64(255, 255, 255).view(1, 1, 3), epoch=2)
    assert tr.switches.view(-1).tolist() == [0, 1, 0]
    assert tr.forgetting.view(-1).tolist() == [0, 1, 0]
    assert tr.read("prediction").view(-1).tolist() == [2, 0, 1]
    assert tr.learned_epoch.view(-1).tolist() == [1, -1, 0]
    # observations: exact only for a fixed ignore mask; here the row count of 3 is reported for seen pixels
    assert tr.observations.view(-1).tolist() == [3, 3, 3]


def test_ignore_index_never_observed_pixels_read_as_unobserved() -> None:
    tr = EventTracker((2, 2), ignore_index=-1)
    for e in range(3):
        tr.update(t64(0, 1), t64(0, 1, 1, 0).view(2, 2) + e % 2, t64(-1, 1, 1, 0).view(2, 2), epoch=e)
    assert tr.observations.tolist() == [[0, 3], [3, 3]]
    assert tr.switches.tolist() == [[0, 2], [2, 2]]
    assert tr.never_learned.tolist() == [[False, False], [False, False]]
    assert tr.ever_correct.tolist() == [[False, True], [True, True]]
    assert tr.last_forgotten_epoch.tolist() == [[-1, 1], [1, 1]]


def test_partial_passes_keep_state_per_element() -> None:
    tr = EventTracker((5,))
    targets = t64(0, 1, 2, 3, 4)
    tr.update(t64(0, 1, 2), t64(0, 1, 2), targets[[0, 1, 2]], epoch=1)
    tr.update(t64(3, 1), t64(3, 0), targets[[3, 1]], epoch=2)  # unsorted subset
    tr.update(t64(4, 0, 3), t64(1, 1, 3), targets[[4, 0, 3]], epoch=3)
    assert tr.observations.tolist() == [2, 2, 1, 2, 1]
    assert tr.switches.tolist() == [1, 1, 0, 0, 0]
    assert tr.forgetting.tolist() == [1, 1, 0, 0, 0]
    assert tr.last_forgotten_epoch.tolist() == [3, 2, -1, -1, -1]
    assert tr.learned_epoch.tolist() == [-1, -1, 1, 2, -1]
    assert tr.never_learned.tolist() == [False, False, False, False, True]


def test_learned_and_last_forgotten_epochs() -> None:
    tr = EventTracker((3,))
    #  element:     0 (learned at 2, stays)  1 (forgotten at 3, relearned at 4)  2 (correct from the start)
    preds = {1: [0, 1, 2], 2: [1, 1, 2], 3: [1, 0, 2], 4: [1, 1, 2], 5: [1, 1, 2]}
    for epoch, p in preds.items():
        feed(tr, p, [1, 1, 2], epoch=epoch)
    assert tr.learned_epoch.tolist() == [2, 4, 1]
    assert tr.last_forgotten_epoch.tolist() == [-1, 3, -1]
    assert tr.forgetting.tolist() == [0, 1, 0]
    assert tr.learning.tolist() == [1, 1, 0]
    assert tr.epochs_seen == [1, 2, 3, 4, 5]


def test_epoch_none_uses_the_update_call_counter() -> None:
    tr = EventTracker((1,))
    for p in [0, 1, 0, 0]:
        feed(tr, [p], [0])
    assert tr.last_forgotten_epoch.tolist() == [1]
    assert tr.learned_epoch.tolist() == [2]
    assert tr.calls == 4


def test_never_learned_vs_unobserved_vs_unlabeled() -> None:
    tr = EventTracker((4,))
    tr.update(t64(0, 1), t64(1, 1), t64(0, 1))
    tr.update(t64(2), t64(1), None)
    assert tr.never_learned.tolist() == [True, False, False, False]
    assert tr.ever_correct.tolist() == [False, True, False, False]
    assert tr.observations.tolist() == [1, 1, 1, 0]
    # never observed: zeros / False / -1
    for name in ("switches", "forgetting", "learning"):
        assert tr.read(name)[3].tolist() == 0
    assert tr.learned_epoch[3].tolist() == -1
    assert tr.last_forgotten_epoch[3].tolist() == -1


def test_counters_saturate_never_wrap() -> None:
    tr = EventTracker((1,))
    tr16 = EventTracker((1,), counter_dtype=torch.int16)
    for i in range(300):  # correct, wrong, correct, ... : 299 switches, 150 forgetting, 149 learning
        for t in (tr, tr16):
            feed(t, [i % 2], [0], epoch=i // 2)
    assert tr.switches.tolist() == [255]
    assert tr.forgetting.tolist() == [150]
    assert tr.learning.tolist() == [149]
    assert tr16.switches.tolist() == [299]
    assert tr16.forgetting.tolist() == [150]
    assert tr16.learning.tolist() == [149]
    for i in range(300, 600):  # 300 forgetting, 299 learning events in total
        feed(tr, [i % 2], [0], epoch=i // 2)
    assert tr.switches.tolist() == [255]
    assert tr.forgetting.tolist() == [255]
    # learning is derived as forgetting + last - first: once forgetting saturates it is within one of it
    assert tr.learning.tolist() == [254]
    assert tr.last_forgotten_epoch.tolist() == [299]


def test_int16_counter_saturates_at_32767() -> None:
    tr = EventTracker((1,), counter_dtype=torch.int16, track_epochs=False)
    state = tr.state_dict()["tensors"]
    state["switches"].fill_(32766)
    state["flags"].fill_(1)  # seen
    for p in [1, 0, 1]:
        tr.update(t64(0), t64(p))
    assert tr.switches.tolist() == [32767]


def test_epoch_fields_widen_past_255_distinct_epochs() -> None:
    tr = EventTracker((2,))
    assert tr.bytes_per_element == pytest.approx(6 + 4)  # plus a 4-byte row counter per sample
    for e in range(300):
        feed(tr, [e % 2, 0], [0, 0], epoch=1000 + e)
    assert tr.state_dict()["tensors"]["learned"].dtype == torch.int16
    assert tr.last_forgotten_epoch.tolist() == [1000 + 299, -1]
    assert tr.learned_epoch.tolist() == [-1, 1000]
    assert tr.bytes_per_element == pytest.approx(8 + 4)


def test_bytes_per_element_for_segmentation() -> None:
    shape = (10, 255, 701)
    with_epochs = EventTracker(shape, device="cpu")
    without = EventTracker(shape, device="cpu", track_epochs=False)
    row_bytes = 4 / (255 * 701)
    assert with_epochs.bytes_per_element == pytest.approx(6 + row_bytes)
    assert without.bytes_per_element == pytest.approx(4 + row_bytes)
    assert without.nbytes == 4 * 10 * 255 * 701 + 4 * 10
    assert EventTracker(shape, num_classes=300).bytes_per_element == pytest.approx(7 + row_bytes)


def test_many_classes_use_int16_predictions() -> None:
    tr = EventTracker((2,), num_classes=1000)
    feed(tr, [999, 256], [999, 0])
    feed(tr, [743, 0], [999, 0])  # 743 == 999 mod 256 would be a missed switch with uint8
    assert tr.switches.tolist() == [1, 1]
    assert tr.forgetting.tolist() == [1, 0]


def test_out_of_range_class_ids_are_reported_at_read_out() -> None:
    tr = EventTracker((2,))
    feed(tr, [300, 1], [1, 1])  # cannot be stored in uint8; no sync in update, so no error yet
    with pytest.raises(ConfigError, match="num_classes"):
        _ = tr.switches
    tr.reset()
    feed(tr, [-1, 1], None)
    with pytest.raises(ConfigError, match="num_classes"):
        tr.state_dict()


def test_update_validates_shapes_and_types() -> None:
    tr = EventTracker((3, 2, 2))
    with pytest.raises(ConfigError, match="preds must have shape"):
        tr.update(t64(0), torch.zeros(1, 2, 3, dtype=torch.int64))
    with pytest.raises(ConfigError, match="targets must have the shape"):
        tr.update(t64(0), torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="integer class ids"):
        tr.update(t64(0), torch.zeros(1, 2, 2))
    with pytest.raises(ConfigError, match="indices"):
        tr.update(torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="epoch"):
        tr.update(t64(0), torch.zeros(1, 2, 2, dtype=torch.int64), epoch=-1)
    with pytest.raises(ConfigError, match="shape"):
        EventTracker((-1,))
    with pytest.raises(ConfigError, match="counter_dtype"):
        EventTracker((3,), counter_dtype=torch.int32)
    with pytest.raises(ConfigError, match="pred_dtype"):
        EventTracker((3,), pred_dtype=torch.float32)
    with pytest.raises(UnknownNameError, match="switches"):
        tr.read("switchez")
    with pytest.raises(ConfigError, match="track_epochs=True"):
        _ = EventTracker((3,), track_epochs=False).learned_epoch


def test_empty_batch_is_a_no_op() -> None:
    tr = EventTracker((3,))
    tr.update(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), epoch=4)
    assert tr.observations.tolist() == [0, 0, 0]


def test_update_does_not_synchronise_with_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    tr = EventTracker((4, 3, 3), ignore_index=255)
    preds = torch.randint(0, 4, (2, 3, 3))
    targets = torch.randint(0, 4, (2, 3, 3))
    tr.update(t64(0, 1), preds, targets, epoch=0)  # allocation happens outside the patch

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("host synchronisation inside EventTracker.update")

    for name in ("item", "__bool__", "tolist", "nonzero", "numpy", "cpu", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    tr.update(t64(2, 0), (preds + 1) % 4, targets, epoch=1)
    tr.update(t64(3, 1), preds, None, epoch=2)
    monkeypatch.undo()
    assert int(tr.switches.sum()) > 0


def test_update_inside_inference_mode_leaves_a_normal_tensor_state() -> None:
    tr = EventTracker((3,))
    with torch.inference_mode():
        feed(tr, [0, 1, 2], [0, 1, 1], epoch=0)
    feed(tr, [1, 1, 1], [0, 1, 1], epoch=1)  # in-place updates outside inference mode must still work
    assert not any(t.is_inference() for t in tr.state_dict()["tensors"].values())
    assert tr.switches.tolist() == [1, 0, 1]


def test_lazy_device_and_to() -> None:
    tr = EventTracker((3,))
    assert tr.device is None
    assert tr.switches.tolist() == [0, 0, 0]  # reads before any update are zeros on the CPU
    feed(tr, [0, 1, 2], None)
    assert tr.device == torch.device("cpu")
    assert tr.to("cpu") is tr
    assert tr.switches.device == torch.device("cpu")


def test_read_rows_matches_full_read() -> None:
    torch.manual_seed(0)
    tr = EventTracker((6, 2, 3))
    targets = torch.randint(0, 3, (6, 2, 3))
    for e in range(4):
        tr.update(torch.arange(6), torch.randint(0, 3, (6, 2, 3)), targets, epoch=e)
    rows = t64(4, 1)
    for name in READOUTS:
        assert torch.equal(tr.read(name, rows), tr.read(name)[rows]), name


def test_reset_clears_state_and_epochs() -> None:
    tr = EventTracker((2,))
    feed(tr, [0, 1], [0, 0], epoch=3)
    feed(tr, [1, 1], [0, 0], epoch=4)
    tr.reset()
    assert tr.observations.tolist() == [0, 0]
    assert tr.switches.tolist() == [0, 0]
    assert tr.epochs_seen == []
    assert tr.calls == 0
    feed(tr, [1, 0], [0, 0], epoch=7)
    assert tr.switches.tolist() == [0, 0]
    assert tr.learned_epoch.tolist() == [-1, 7]


def _state_equal(a: EventTracker, b: EventTracker) -> None:
    for name in READOUTS:
        assert torch.equal(a.read(name).cpu(), b.read(name).cpu()), name
    assert a.epochs_seen == b.epochs_seen
    assert a.calls == b.calls


def test_save_load_round_trip(tmp_path: os.PathLike[str]) -> None:
    torch.manual_seed(1)
    tr = EventTracker((5, 3, 4), ignore_index=9, counter_dtype=torch.int16)
    targets = torch.randint(0, 3, (5, 3, 4))
    targets[0, 0, 0] = 9
    for e in range(6):
        rows = torch.randperm(5)[:3]
        tr.update(rows, torch.randint(0, 3, (3, 3, 4)), targets[rows], epoch=2 * e)
    path = tr.save(os.path.join(tmp_path, "sub", "tracker.npz"))
    assert sorted(os.listdir(path.parent)) == ["tracker.npz"]  # no temp file left behind
    back = EventTracker.load(path, device="cpu")
    assert back.device == torch.device("cpu")
    assert back.shape == tr.shape and back.ignore_index == 9 and back.counter_dtype == torch.int16
    _state_equal(tr, back)
    # continuing both gives the same state
    more_preds = torch.randint(0, 3, (5, 3, 4))
    for t in (tr, back):
        t.update(torch.arange(5), more_preds, targets, epoch=99)
    _state_equal(tr, back)
    # overwrite in place is atomic and keeps the latest content
    tr.save(path)
    _state_equal(tr, EventTracker.load(path))


def test_load_state_dict_checks_compatibility(tmp_path: os.PathLike[str]) -> None:
    tr = EventTracker((3,))
    feed(tr, [0, 1, 2], [0, 0, 0], epoch=1)
    with pytest.raises(ConfigError, match="shape"):
        EventTracker((4,)).load_state_dict(tr.state_dict())
    with pytest.raises(ConfigError, match="track_epochs"):
        EventTracker((3,), track_epochs=False).load_state_dict(tr.state_dict())
    other = EventTracker((3,))
    other.load_state_dict(tr.state_dict())
    _state_equal(tr, other)
    with pytest.raises(ForgettingError, match="not found"):
        EventTracker.load(os.path.join(tmp_path, "missing.npz"))
    bad = os.path.join(tmp_path, "bad.npz")
    np.savez_compressed(bad, x=np.zeros(3))
    with pytest.raises(ForgettingError, match="meta"):
        EventTracker.load(bad)


def test_repr_mentions_shape_and_bytes() -> None:
    text = repr(EventTracker((2, 3)))
    assert "shape=(2, 3)" in text and "nbytes=" in text


def test_to_numpy_returns_host_arrays() -> None:
    tr = EventTracker((3,))
    feed(tr, [0, 1, 2], [0, 0, 0], epoch=0)
    feed(tr, [1, 1, 0], [0, 0, 0], epoch=1)
    out = tr.to_numpy()
    assert set(out) >= {"switches", "forgetting", "never_learned", "learned_epoch"}
    assert out["switches"].tolist() == [1, 0, 1]
    assert out["learned_epoch"].tolist() == [-1, -1, 1]
    assert isinstance(out["never_learned"], np.ndarray)


# ------------------------------------------------------------------------ first_observation="reference"
class _AuthorsTracker:
    """The update of ``ClassifcationTracker`` in olivesgatech/gauss
    (``training/classification/classificationtracker.py``), verbatim in numpy."""

    def __init__(self, tracking_size: int) -> None:
        self._prev_acc = np.zeros(tracking_size, dtype=int)
        self._prev_pred = np.zeros(tracking_size, dtype=int)
        self._forgetting_events = np.zeros(tracking_size, dtype=int)
        self._switch_events = np.zeros(tracking_size, dtype=int)

    def update(self, acc: np.ndarray, pred: np.ndarray, idxs: np.ndarray) -> None:
        delta = np.clip(self._prev_acc[idxs] - acc, a_min=0, a_max=1)
        self._forgetting_events[idxs] += delta
        change = self._prev_pred[idxs] != pred
        self._switch_events[idxs] += change
        self._prev_acc[idxs] = acc
        self._prev_pred[idxs] = pred


@pytest.mark.parametrize("seed", range(6))
def test_reference_mode_gives_exactly_the_authors_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_classes = 300, int(rng.integers(2, 11))
    targets = rng.integers(0, n_classes, n)
    ours = EventTracker((n,), first_observation="reference")
    pool = EventTracker((n,), first_observation="reference")  # the unlabeled pool: switches only
    theirs = _AuthorsTracker(n)
    for epoch in range(int(rng.integers(3, 12))):
        # each pass covers a random subset of the rows, in shuffled batches (as the pool loader does)
        rows = rng.permutation(n)[: int(rng.integers(1, n + 1))]
        # predictions drift from the targets towards noise and back: switches and forgetting both occur
        noisy = rng.random(rows.size) < rng.uniform(0.1, 0.9)
        preds = np.where(noisy, rng.integers(0, n_classes, rows.size), targets[rows])
        for batch in np.array_split(np.arange(rows.size), 4):
            idx, p = rows[batch], preds[batch]
            theirs.update((p == targets[idx]).astype(int), p, idx)
            ours.update(
                torch.from_numpy(idx), torch.from_numpy(p), torch.from_numpy(targets[idx]), epoch=epoch
            )
            pool.update(torch.from_numpy(idx), torch.from_numpy(p), None, epoch=epoch)
    np.testing.assert_array_equal(ours.switches.numpy(), theirs._switch_events)
    np.testing.assert_array_equal(ours.forgetting.numpy(), theirs._forgetting_events)
    np.testing.assert_array_equal(pool.switches.numpy(), theirs._switch_events)
    assert ours.switches.sum() > 0 and ours.forgetting.sum() > 0


def test_reference_mode_differs_from_exact_only_at_the_first_observation() -> None:
    exact, ref = EventTracker((4,)), EventTracker((4,), first_observation="reference")
    for tr in (exact, ref):
        feed(tr, [3, 0, 1, 2], [3, 1, 1, 0], epoch=0)
    assert ref.switches.tolist() == [1, 0, 1, 1]  # first prediction != class 0
    assert exact.switches.tolist() == [0, 0, 0, 0]
    assert ref.forgetting.tolist() == exact.forgetting.tolist() == [0, 0, 0, 0]  # no first forgetting
    assert ref.learning.tolist() == [1, 0, 1, 0]  # from the zero start, a correct first prediction is learned
    for tr in (exact, ref):
        feed(tr, [1, 0, 0, 2], [3, 1, 1, 0], epoch=1)
    assert (ref.switches - exact.switches).tolist() == [1, 0, 1, 1]
    assert ref.forgetting.tolist() == exact.forgetting.tolist() == [1, 0, 1, 0]
    assert (ref.learning - exact.learning).tolist() == [1, 0, 1, 0]


def test_reference_mode_is_validated_saved_and_checked_on_load(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ConfigError, match="first_observation"):
        EventTracker((2,), first_observation="paper")
    ref = EventTracker((3,), first_observation="reference")
    feed(ref, [2, 0, 1], None, epoch=0)
    path = ref.save(os.path.join(tmp_path, "ref.npz"))
    back = EventTracker.load(path)
    assert back.first_observation == "reference" and back.switches.tolist() == [1, 0, 1]
    with pytest.raises(ConfigError, match="first_observation"):
        EventTracker((3,)).load_state_dict(ref.state_dict())
    assert "first_observation='reference'" in repr(ref)


# ---------------------------------------------------------------------------------------------- reference
@dataclass
class _Ref:
    seen: bool = False
    pred: int = 0
    has_t: bool = False
    correct: bool = False
    ever: bool = False
    sw: int = 0
    fg: int = 0
    ln: int = 0
    obs: int = 0
    last_forgotten: int = -1
    learned: int = -1


def _reference_update(
    ref: dict[tuple[int, ...], _Ref],
    rows: list[int],
    preds: np.ndarray,
    targets: np.ndarray | None,
    epoch: int,
    ignore_index: int | None,
    cap: int,
) -> None:
    """The obviously-correct per-element definition of design section 1."""
    for b, r in enumerate(rows):
        for pos in np.ndindex(preds.shape[1:]):
            s = ref[(r, *pos)]
            p = int(preds[(b, *pos)])
            t = None if targets is None else int(targets[(b, *pos)])
            if t is not None and ignore_index is not None and t == ignore_index:
                continue
            if s.seen and p != s.pred:
                s.sw = min(s.sw + 1, cap)
            s.seen, s.pred = True, p
            s.obs += 1
            if t is None:
                continue
            c = p == t
            if s.has_t:
                if s.correct and not c:
                    s.fg = min(s.fg + 1, cap)
                    s.last_forgotten = epoch
                if not s.correct and c:
                    s.ln += 1
                    s.learned = epoch
            elif c:
                s.learned = epoch
            if not c:
                s.learned = -1
            s.has_t, s.correct = True, c
            s.ever = s.ever or c


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_reference_on_random_sequences(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 5), label="N")
    dims = tuple(data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=2), label="dims"))
    n_classes = data.draw(st.integers(1, 4), label="classes")
    ignore_index = data.draw(st.sampled_from([None, -1, 2]), label="ignore_index")
    track_epochs = data.draw(st.booleans(), label="track_epochs")
    counter_dtype = data.draw(st.sampled_from([torch.uint8, torch.int16]), label="counter_dtype")
    vary_targets = data.draw(st.booleans(), label="vary_targets")
    pass_epochs = data.draw(st.booleans(), label="pass_epochs")
    n_calls = data.draw(st.integers(1, 10), label="calls")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    roundtrip_at = data.draw(st.integers(-1, n_calls - 1), label="roundtrip_at")
    rng = np.random.default_rng(seed)
    shape = (n, *dims)
    target_values = list(range(n_classes)) + ([] if ignore_index is None else [ignore_index])

    tracker = EventTracker(
        shape, ignore_index=ignore_index, track_epochs=track_epochs, counter_dtype=counter_dtype
    )
    cap = tracker.counter_max
    ref = {pos: _Ref() for pos in np.ndindex(shape)}
    fixed_targets = rng.choice(target_values, size=shape)
    validity: dict[tuple[int, ...], set[bool]] = {pos: set() for pos in np.ndindex(shape)}
    epoch = 0
    for call in range(n_calls):
        b = int(rng.integers(0, n + 1))
        rows = rng.permutation(n)[:b].tolist()
        preds = rng.integers(0, n_classes, size=(b, *dims))
        labeled = bool(rng.integers(0, 2))
        if labeled:
            targets = rng.choice(target_values, size=(b, *dims)) if vary_targets else fixed_targets[rows]
        else:
            targets = None
        epoch += int(rng.integers(0, 3))
        given_epoch = epoch if pass_epochs else None
        ref_epoch = epoch if pass_epochs else call
        tracker.update(
            torch.as_tensor(np.asarray(rows, dtype=np.int64)),
            torch.as_tensor(preds),
            None if targets is None else torch.as_tensor(targets),
            epoch=given_epoch,
        )
        _reference_update(ref, rows, preds, targets, ref_epoch, ignore_index, cap)
        for bi, r in enumerate(rows):
            for pos in np.ndindex(tuple(dims)):
                ok = targets is None or ignore_index is None or int(targets[(bi, *pos)]) != ignore_index
                validity[(r, *pos)].add(ok)
        if call == roundtrip_at:
            fresh = EventTracker(
                shape, ignore_index=ignore_index, track_epochs=track_epochs, counter_dtype=counter_dtype
            )
            fresh.load_state_dict(tracker.state_dict())
            tracker = fresh

    def expect(attr: str) -> np.ndarray:
        return np.array([getattr(ref[pos], attr) for pos in np.ndindex(shape)]).reshape(shape)

    np.testing.assert_array_equal(tracker.switches.numpy(), expect("sw"))
    np.testing.assert_array_equal(tracker.forgetting.numpy(), expect("fg"))
    np.testing.assert_array_equal(tracker.learning.numpy(), expect("ln"))
    np.testing.assert_array_equal(tracker.seen.numpy(), expect("seen"))
    np.testing.assert_array_equal(tracker.observed_with_targets.numpy(), expect("has_t"))
    np.testing.assert_array_equal(tracker.ever_correct.numpy(), expect("ever"))
    np.testing.assert_array_equal(tracker.never_learned.numpy(), expect("has_t") & ~expect("ever"))
    np.testing.assert_array_equal(tracker.read("correct").numpy(), expect("correct"))
    seen = expect("seen")
    np.testing.assert_array_equal(tracker.read("prediction").numpy()[seen], expect("pred")[seen])
    # observations are exact wherever an element's validity was the same at every observation of its row
    exact = np.array([len(validity[pos]) <= 1 for pos in np.ndindex(shape)]).reshape(shape)
    np.testing.assert_array_equal(tracker.observations.numpy()[exact], expect("obs")[exact])
    if track_epochs:
        np.testing.assert_array_equal(tracker.last_forgotten_epoch.numpy(), expect("last_forgotten"))
        np.testing.assert_array_equal(tracker.learned_epoch.numpy(), expect("learned"))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_obs=st.integers(250, 600))
def test_saturation_matches_a_capped_reference(seed: int, n_obs: int) -> None:
    rng = np.random.default_rng(seed)
    preds = rng.integers(0, 2, size=n_obs)
    targets = np.zeros(n_obs, dtype=np.int64)
    tr = EventTracker((1,), track_epochs=False)
    ref = {(0,): _Ref()}
    for i in range(n_obs):
        tr.update(t64(0), t64(int(preds[i])), t64(int(targets[i])))
        _reference_update(ref, [0], preds[i : i + 1].reshape(1), targets[i : i + 1].reshape(1), i, None, 255)
    assert tr.switches.tolist() == [ref[(0,)].sw]
    assert tr.forgetting.tolist() == [ref[(0,)].fg]
    true_learning = ref[(0,)].ln
    if ref[(0,)].fg < 255:
        assert tr.learning.tolist() == [true_learning]
    else:  # documented: derived learning is within one of the saturated forgetting count
        assert abs(tr.learning.tolist()[0] - min(true_learning, 255)) <= 1


def test_narrow_target_dtypes_and_numpy_epochs() -> None:
    tr = EventTracker((1, 3), ignore_index=-1)
    targets = torch.tensor([[0, 1, 2]], dtype=torch.uint8)  # -1 cannot even occur in uint8
    tr.update(t64(0), torch.tensor([[0, 1, 1]], dtype=torch.uint8), targets, epoch=np.int64(2))
    tr.update(t64(0), torch.tensor([[1, 1, 2]], dtype=torch.int32), targets, epoch=np.int64(3))
    assert tr.forgetting.tolist() == [[1, 0, 0]]
    assert tr.learned_epoch.tolist() == [[-1, 2, 3]]
    with pytest.raises(ConfigError, match="indices"):
        tr.update(torch.zeros(1), torch.zeros(1, 3, dtype=torch.int64))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_update_never_synchronises(tmp_path: os.PathLike[str]) -> None:
    tr = EventTracker((64, 32, 32), ignore_index=255)
    dev = torch.device("cuda")
    preds = torch.randint(0, 6, (16, 32, 32), device=dev)
    targets = torch.randint(0, 6, (16, 32, 32), device=dev)
    idx = torch.arange(16, device=dev)
    tr.update(idx, preds, targets, epoch=0)  # allocation
    torch.cuda.set_sync_debug_mode("error")
    try:
        for e in range(1, 4):
            tr.update(idx + e, (preds + e) % 6, targets, epoch=e)
            tr.update(idx, preds, None, epoch=e)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert tr.switches.device.type == "cuda"
    assert int(tr.switches.sum()) > 0
    back = EventTracker.load(tr.save(os.path.join(tmp_path, "cuda.npz")), device="cpu")
    assert torch.equal(back.switches, tr.switches.cpu())
