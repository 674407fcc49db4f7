"""ObservationCallback driven by a hand-written training loop with tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forgetting.callbacks import TrainingCallback
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.observe import ObservationCallback


class TinyCNN(nn.Module):
    """conv -> BN -> ReLU -> pool -> linear, with dropout: exercises BatchNorm and train/eval flags."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(self.drop(h))


class TinySegmenter(nn.Module):
    """A 1x1 conv segmenter: logits ``[B, C, H, W]``."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, classes, 1)
        self.bn = nn.BatchNorm2d(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class RowEcho(nn.Module):
    """Predicts ``(row id + shift) % classes``, the row id being encoded in the first pixel of each image.

    Lets a test know the exact prediction of every row at every pass.
    """

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.shift = 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.round(x[:, 0, 0, 0] * 255).long()
        cls = (rows + self.shift) % self.classes
        return nn.functional.one_hot(cls, self.classes).float() + 0 * self.dummy


def make_data(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    return images, labels


def row_images(n: int) -> torch.Tensor:
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return images


def fake_fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    callbacks: list[ObservationCallback],
    epochs: int,
) -> int:
    """A minimal trainer: 2 optimizer steps per epoch, hooks called as forgetting.training.fit does."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = 0
    for cb in callbacks:
        cb.on_train_begin(model)
    model.train()
    for epoch in range(1, epochs + 1):
        for half in (slice(0, len(images) // 2), slice(len(images) // 2, len(images))):
            loss = nn.functional.cross_entropy(model(images[half].float() / 255), labels[half])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            for cb in callbacks:
                cb.on_step_end(model, epoch=epoch, step=step)
        for cb in callbacks:
            cb.on_epoch_end(model, epoch=epoch, step=step)
    return step


def test_implements_the_training_callback_protocol() -> None:
    images, labels = make_data()
    assert isinstance(ObservationCallback(images, labels), TrainingCallback)


def test_epoch_cadence() -> None:
    torch.manual_seed(0)
    images, labels = make_data()
    cb = ObservationCallback(images, labels, every=2, batch_size=5)
    fake_fit(TinyCNN(), images, labels, [cb], epochs=5)
    assert cb.passes == 2
    assert cb.tracker.epochs_seen == [2, 4]
    assert cb.tracker.observations.tolist() == [2] * len(images)
    assert cb.seconds > 0.0


def test_step_cadence() -> None:
    torch.manual_seed(0)
    images, labels = make_data()
    cb = ObservationCallback(images, labels, every=3, unit="step")
    steps = fake_fit(TinyCNN(), images, labels, [cb], epochs=5)
    assert steps == 10
    assert cb.passes == 3  # steps 3, 6, 9
    assert cb.tracker.epochs_seen == [2, 3, 5]  # the epochs those steps fall in


def test_tracker_matches_known_predictions_with_rotating_subsample() -> None:
    n, classes = 20, 5
    model = RowEcho(classes)
    targets = torch.zeros(n, dtype=torch.int64)
    cb = ObservationCallback(row_images(n), targets, subsample=7, seed=3, batch_size=3)
    times_seen = np.zeros(n, dtype=np.int64)
    last_pred = np.full(n, -1)
    switches = np.zeros(n, dtype=np.int64)
    forgetting = np.zeros(n, dtype=np.int64)
    ever_correct = np.zeros(n, dtype=bool)
    for epoch in range(1, 9):
        model.shift = epoch % 2  # alternate every pass
        cb.on_epoch_end(model, epoch=epoch, step=epoch)
        rows = cb.last_rows
        assert rows is not None and rows.shape == (7,)
        assert torch.equal(rows, cb.rows_for_pass(epoch - 1))
        for r in rows.tolist():
            pred = (r + model.shift) % classes
            if last_pred[r] >= 0:
                switches[r] += pred != last_pred[r]
                forgetting[r] += last_pred[r] == 0 and pred != 0
            last_pred[r] = pred
            ever_correct[r] |= pred == 0
            times_seen[r] += 1
    tr = cb.tracker
    assert tr.observations.tolist() == times_seen.tolist()
    assert tr.switches.tolist() == switches.tolist()
    assert tr.forgetting.tolist() == forgetting.tolist()
    assert tr.ever_correct.tolist() == ever_correct.tolist()
    seen = times_seen > 0
    assert tr.read("prediction").numpy()[seen].tolist() == last_pred[seen].tolist()
    assert int(forgetting.sum()) > 0  # the scenario does exercise forgetting


def test_subsample_fixed_vs_rotating_seeded_and_reproducible() -> None:
    images, labels = make_data(n=50)
    fixed = ObservationCallback(images, labels, subsample=0.2, subsample_mode="fixed", seed=1)
    rotating = ObservationCallback(images, labels, subsample=0.2, subsample_mode="rotating", seed=1)
    again = ObservationCallback(images, labels, subsample=10, subsample_mode="rotating", seed=1)
    other_seed = ObservationCallback(images, labels, subsample=0.2, subsample_mode="rotating", seed=2)
    assert fixed.n_rows_per_pass == rotating.n_rows_per_pass == 10
    f_rows = [fixed.rows_for_pass(p) for p in range(4)]
    r_rows = [rotating.rows_for_pass(p) for p in range(4)]
    assert all(torch.equal(f_rows[0], rows) for rows in f_rows)
    assert len({tuple(rows.tolist()) for rows in r_rows}) == 4
    assert all(torch.equal(a, again.rows_for_pass(p)) for p, a in enumerate(r_rows))
    assert not torch.equal(r_rows[1], other_seed.rows_for_pass(1))
    for rows in r_rows:
        assert rows.unique().numel() == 10 and bool((rows[1:] > rows[:-1]).all())
    # observing with a fixed subset only ever touches those rows
    model = TinyCNN()
    for epoch in (1, 2, 3):
        fixed.on_epoch_end(model, epoch=epoch, step=epoch)
    obs = fixed.tracker.observations
    assert obs[f_rows[0]].tolist() == [3] * 10
    assert int(obs.sum()) == 30


def test_full_set_when_subsample_covers_everything() -> None:
    images, labels = make_data(n=8)
    assert ObservationCallback(images, labels, subsample=1.0).rows_for_pass(0) is None
    assert ObservationCallback(images, labels, subsample=100).rows_for_pass(3) is None


def test_restores_train_flags_and_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    images, labels = make_data()
    model = TinyCNN()
    model.train()
    model.drop.eval()  # a module deliberately in eval mode stays so
    with torch.no_grad():  # give BN non-trivial statistics
        model(images.float() / 255)
    before = {k: v.clone() for k, v in model.bn.state_dict().items()}
    params = [p.detach().clone() for p in model.parameters()]
    cb = ObservationCallback(images, labels, batch_size=7)
    cb.on_epoch_end(model, epoch=1, step=1)
    assert model.training and model.bn.training and not model.drop.training
    for k, v in model.bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))


def test_eval_mode_predictions_are_deterministic() -> None:
    # dropout must be off during a pass: two passes of an unchanged model switch nothing
    torch.manual_seed(0)
    images, labels = make_data()
    model = TinyCNN().train()
    cb = ObservationCallback(images, labels)
    cb.on_epoch_end(model, epoch=1, step=1)
    cb.on_epoch_end(model, epoch=2, step=2)
    assert int(cb.tracker.switches.sum()) == 0


def test_works_without_targets() -> None:
    torch.manual_seed(0)
    images, labels = make_data()
    cb = ObservationCallback(images, None, batch_size=10)
    assert cb.tracker.switches.tolist() == [0] * len(images)  # readable before any pass: all unobserved
    fake_fit(TinyCNN(), images, labels, [cb], epochs=4)
    tr = cb.tracker
    assert tr.shape == (len(images),)
    assert tr.observations.tolist() == [4] * len(images)
    assert int(tr.forgetting.sum()) == 0
    assert not bool(tr.observed_with_targets.any())
    assert tr.state_dict()["tensors"]["pred"].is_inference() is False


def test_segmentation_masks_with_ignore_index() -> None:
    torch.manual_seed(0)
    n = 6
    images = torch.randint(0, 256, (n, 1, 5, 7), dtype=torch.uint8)
    masks = torch.randint(0, 3, (n, 5, 7))
    masks[:, 0, :] = 255
    cb = ObservationCallback(images, masks, ignore_index=255, batch_size=4, name="sections")
    model = TinySegmenter()
    for epoch in (1, 2):
        cb.on_epoch_end(model, epoch=epoch, step=epoch)
        with torch.no_grad():
            model.conv.bias += torch.tensor([1.0, -1.0, 0.5])  # move the decisions
    tr = cb.tracker
    assert tr.shape == (n, 5, 7)
    obs = tr.observations
    assert bool((obs[:, 0, :] == 0).all()) and bool((obs[:, 1:, :] == 2).all())
    assert "sections" in repr(cb)


def test_unlabeled_segmentation_gets_a_pixel_tracker_at_the_first_pass() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 4, 6), dtype=torch.uint8)
    cb = ObservationCallback(images, None, batch_size=2)
    assert cb.tracker.shape == (5,)
    model = TinySegmenter()
    cb.on_epoch_end(model, epoch=1, step=1)
    with torch.no_grad():
        model.conv.bias += torch.tensor([2.0, -2.0, 0.0])
    cb.on_epoch_end(model, epoch=2, step=2)
    assert cb.tracker.shape == (5, 4, 6)
    assert cb.tracker.observations.unique().tolist() == [2]
    assert int(cb.tracker.forgetting.sum()) == 0


def test_several_callbacks_watch_different_sets() -> None:
    torch.manual_seed(0)
    images, labels = make_data(n=30)
    pool = ObservationCallback(images[:20], None, name="pool", subsample=0.5)
    test = ObservationCallback(images[20:], labels[20:], name="test", every=2)
    fake_fit(TinyCNN(), images, labels, [pool, test], epochs=4)
    assert (pool.passes, test.passes) == (4, 2)
    assert pool.tracker.shape == (20,) and test.tracker.shape == (10,)
    assert int(pool.tracker.observations.sum()) == 4 * 10


def test_uses_a_given_tracker() -> None:
    images, labels = make_data(n=10)
    tracker = EventTracker((10,), track_epochs=False)
    cb = ObservationCallback(images, labels, tracker=tracker)
    cb.on_epoch_end(TinyCNN(), epoch=1, step=1)
    assert cb.tracker is tracker
    assert tracker.observations.tolist() == [1] * 10
    with pytest.raises(ConfigError, match="rows"):
        ObservationCallback(images, labels, tracker=EventTracker((11,)))


def test_invalid_arguments_are_rejected() -> None:
    images, labels = make_data(n=10)
    with pytest.raises(ConfigError, match="uint8"):
        ObservationCallback(images.float(), labels)
    with pytest.raises(ConfigError, match="targets"):
        ObservationCallback(images, labels[:5])
    with pytest.raises(ConfigError, match="every"):
        ObservationCallback(images, labels, every=0)
    with pytest.raises(ConfigError, match="unit"):
        ObservationCallback(images, labels, unit="batch")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="subsample"):
        ObservationCallback(images, labels, subsample=1.5)
    with pytest.raises(ConfigError, match="subsample"):
        ObservationCallback(images, labels, subsample=0)
    with pytest.raises(ConfigError, match="subsample_mode"):
        ObservationCallback(images, labels, subsample_mode="random")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ subsample_mode "unstable"


class RowFlip(nn.Module):
    """Rows in ``unstable`` predict class ``shift % classes`` (a new class each pass); the others class 0.

    The row id is encoded in the first pixel (see :func:`row_images`).
    """

    def __init__(self, n: int, unstable: list[int], classes: int = 50) -> None:
        super().__init__()
        self.is_unstable = torch.zeros(n, dtype=torch.bool)
        self.is_unstable[unstable] = True
        self.classes = classes
        self.shift = 1
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.round(x[:, 0, 0, 0] * 255).long()
        cls = torch.where(self.is_unstable[rows], torch.tensor(self.shift % self.classes), torch.tensor(0))
        return nn.functional.one_hot(cls, self.classes).float() + 0 * self.dummy


def _reference_unstable_rows(
    seed: int, pass_number: int, seen: np.ndarray, changed: np.ndarray, m: int
) -> list[int]:
    """The documented schedule: never observed, then changed at the latest observation, then the rest;
    a float64 uniform key from a generator seeded with (seed, pass) orders each tier."""
    from forgetting.observe import _pass_seed

    g = torch.Generator().manual_seed(_pass_seed(seed, pass_number))
    key = torch.rand(seen.size, generator=g, dtype=torch.float64).numpy()
    key = key + 2.0 * ~seen + 1.0 * changed
    return sorted(np.argsort(-key, kind="stable")[:m].tolist())


def test_unstable_schedule_follows_the_three_tiers() -> None:
    n, m, seed, passes = 20, 5, 7, 30
    unstable = [3, 11, 17]
    model = RowFlip(n, unstable)
    cb = ObservationCallback(row_images(n), None, subsample=0.25, subsample_mode="unstable", seed=seed)
    assert cb.n_rows_per_pass == m
    seen = np.zeros(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    last = np.full(n, -1)
    observed: list[list[int]] = []
    for p in range(passes):
        model.shift = p + 1
        expected = _reference_unstable_rows(seed, p, seen, changed, m)
        cb.on_epoch_end(model, epoch=p + 1, step=p + 1)
        rows = cb.last_rows
        assert rows is not None and rows.tolist() == expected, f"pass {p}"
        for r in expected:
            pred = model.shift % model.classes if r in unstable else 0
            changed[r] = seen[r] and pred != last[r]
            seen[r] = True
            last[r] = pred
        observed.append(expected)
    # The first ceil(n / m) passes cover every row exactly once.
    first = [r for rows in observed[: n // m] for r in rows]
    assert sorted(first) == list(range(n))
    # Once an unstable row has been seen twice it is observed at every pass (3 rows fit the budget of 5) ...
    second_look = max(next(p for p in range(n // m, passes) if r in observed[p]) for r in unstable)
    for p in range(second_look + 1, passes):
        assert set(unstable) <= set(observed[p])
    # ... its count is exact from then on, and the rest of the budget rotates through the stable rows.
    rest = {r for rows in observed[second_look + 1 :] for r in rows} - set(unstable)
    assert len(rest) > 2
    obs = cb.tracker.observations.numpy()
    assert cb.tracker.switches.numpy()[unstable].tolist() == (obs[unstable] - 1).tolist()
    assert int(cb.tracker.switches.sum()) == int((obs[unstable] - 1).sum())  # stable rows never switch
    assert int(obs.sum()) == m * passes  # a fixed budget per pass


def test_unstable_is_seeded_and_reproducible() -> None:
    n = 40

    def run(seed: int) -> list[list[int]]:
        model = RowFlip(n, [1, 5, 9, 22, 30])
        cb = ObservationCallback(row_images(n), None, subsample=8, subsample_mode="unstable", seed=seed)
        out = []
        for p in range(10):
            model.shift = p + 1
            cb.on_epoch_end(model, epoch=p + 1, step=p + 1)
            assert cb.last_rows is not None
            out.append(cb.last_rows.tolist())
        return out

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_unstable_without_a_budget_observes_everything_and_keeps_no_flags() -> None:
    images, labels = make_data(n=10)
    cb = ObservationCallback(images, labels, subsample_mode="unstable")
    assert cb.rows_for_pass(0) is None
    fake_fit(TinyCNN(), images, labels, [cb], epochs=2)
    assert cb.tracker.observations.tolist() == [2] * 10
    assert cb._row_seen is None


def test_unstable_with_labels_and_step_cadence_matches_a_rotating_count_budget() -> None:
    torch.manual_seed(0)
    images, labels = make_data(n=30)
    cb = ObservationCallback(images, labels, every=1, unit="step", subsample=0.5, subsample_mode="unstable")
    steps = fake_fit(TinyCNN(), images, labels, [cb], epochs=4)
    assert cb.passes == steps == 8
    assert int(cb.tracker.observations.sum()) == 15 * 8
    assert cb.tracker.observations.min() >= 1  # the first two passes covered every row


def test_unstable_rows_of_a_pixel_tracker() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 4, 4), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 3, (12, 4, 4), generator=g)
    masks[:, 0, 0] = 255
    cb = ObservationCallback(images, masks, subsample=4, subsample_mode="unstable", ignore_index=255)
    model = TinySegmenter()
    for epoch in range(1, 7):
        with torch.no_grad():
            model.conv.weight.normal_(generator=g)
        cb.on_epoch_end(model, epoch=epoch, step=epoch)
    assert cb.tracker.shape == (12, 4, 4)
    rows_obs = cb.tracker.observations[:, 1, 1]
    assert int(rows_obs.sum()) == 4 * 6 and int(rows_obs.min()) >= 1
    assert cb._row_changed is not None and cb._row_changed.dtype == torch.bool


def test_track_config_and_toml_accept_unstable_and_reject_unknown_modes() -> None:
    from forgetting.experiments import parse_config
    from forgetting.loop import TrackConfig

    assert TrackConfig(subsample=0.25, subsample_mode="unstable").subsample_mode == "unstable"
    with pytest.raises(ConfigError, match="subsample_mode"):
        TrackConfig(subsample_mode="busy")  # type: ignore[arg-type]
    config = parse_config('[track]\nsubsample = 0.25\nsubsample_mode = "unstable"\n', validate_names=False)
    assert config.track.subsample_mode == "unstable"
    with pytest.raises(ConfigError, match="subsample_mode"):
        parse_config('[track]\nsubsample_mode = "busy"\n', validate_names=False)


def test_track_presets_and_the_default() -> None:
    from forgetting.experiments import expand_grid, parse_config
    from forgetting.loop import TrackConfig
    from forgetting.observe import DEFAULT_TRACK_PRESET, TRACK_PRESETS

    assert TrackConfig() == TrackConfig.preset(DEFAULT_TRACK_PRESET)
    assert TrackConfig() == TrackConfig.preset("paper-exact")
    cheap = TrackConfig.preset("unstable-25")
    assert (cheap.subsample, cheap.subsample_mode) == (0.25, "unstable")
    paper = TrackConfig.preset("paper-exact", enabled=True)
    assert (paper.unit, paper.every, paper.subsample, paper.enabled) == ("epoch", 1, None, True)
    with pytest.raises(ConfigError, match="preset"):
        TrackConfig.preset("paper")
    # A config without tracking keys gets the default; the preset is one key away and is not stored, so it
    # is the same experiment as its spelled-out values.
    (default,) = expand_grid(parse_config("", validate_names=False))
    assert default.loop_config().track == TrackConfig()
    (preset,) = expand_grid(parse_config('[track]\npreset = "paper-exact"\n', validate_names=False))
    spelled = '[track]\nunit = "epoch"\nevery = 1\nsubsample = "all"\nsubsample_mode = "rotating"\n'
    (explicit,) = expand_grid(parse_config(spelled, validate_names=False))
    assert preset.id == explicit.id == default.id
    (cheap_spec,) = expand_grid(parse_config('[track]\npreset = "unstable-25"\n', validate_names=False))
    assert cheap_spec.id != default.id and cheap_spec.loop_config().track == cheap
    (all_rows,) = expand_grid(parse_config('[track]\nsubsample = "all"\n', validate_names=False))
    assert all_rows.id == preset.id  # the mode means nothing without a subsample: stored as "rotating"
    assert preset.loop_config().track == TrackConfig.preset("paper-exact")
    assert set(TRACK_PRESETS) == {"paper-exact", "unstable-25"}
    with pytest.raises(ConfigError, match="drop every or drop the preset"):
        parse_config('[track]\npreset = "paper-exact"\nevery = 2\n', validate_names=False)
    with pytest.raises(ConfigError, match="unknown preset 'paper'"):
        parse_config('[track]\npreset = "paper"\n', validate_names=False)
    with pytest.raises(
        ConfigError, match="allowed keys in \\[track\\]: enabled, every, first_observation, preset"
    ):
        parse_config("[track]\nprest = 1\n", validate_names=False)
