"""The trainer: stopping rules, callbacks, determinism, augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetting.callbacks import Callback
from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError, TrainingLimitError
from forgetting.training import UNCAPPED_EPOCH_LIMIT, TrainConfig, augment_batch, evaluate_accuracy, fit


def _blobs(n: int = 128, seed: int = 0) -> Split:
    """Two easily separable classes: bright vs dark 8x8 images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels[:, None, None, None] == 1, 200, 40)
    noise = torch.randint(-30, 30, (n, 1, 8, 8), generator=g)
    return Split((base + noise).clamp(0, 255).to(torch.uint8), labels.to(torch.int64))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


class Recorder(Callback):
    def __init__(self) -> None:
        self.began = 0
        self.steps: list[tuple[int, int]] = []
        self.epochs: list[tuple[int, int]] = []
        self.training_flags: list[bool] = []

    def on_train_begin(self, model: nn.Module) -> None:
        self.began += 1

    def on_step_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        self.steps.append((epoch, step))
        self.training_flags.append(model.training)

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        self.epochs.append((epoch, step))
        model.eval()  # a misbehaving callback: the trainer must put the model back in train mode


def test_fixed_epochs_runs_exactly_and_calls_back_in_order() -> None:
    data = _blobs(100)
    rec = Recorder()
    record = fit(_model(), data, TrainConfig(epochs=3, batch_size=32), callbacks=[rec])
    assert record.epochs == 3
    assert record.steps == 3 * 4  # ceil(100 / 32) = 4 batches per epoch
    assert rec.began == 1
    assert rec.epochs == [(1, 4), (2, 8), (3, 12)]
    assert rec.steps[0] == (1, 1) and rec.steps[-1] == (3, 12)
    assert all(rec.training_flags)
    assert record.reached_target is None


def test_target_accuracy_stops_early_and_max_epochs_bounds() -> None:
    data = _blobs(128)
    cfg = TrainConfig(target_accuracy=0.9, min_epochs=2, max_epochs=50, lr=1e-2, batch_size=32)
    record = fit(_model(), data, cfg)
    assert record.reached_target is True
    assert 2 <= record.epochs < 50
    assert record.train_accuracy >= 0.9

    # Random labels cannot be fitted to 100% in 3 epochs: the hard limit must stop it.
    g = torch.Generator().manual_seed(1)
    noisy = Split(data.images, torch.randint(0, 2, (128,), generator=g))
    record = fit(_model(), noisy, TrainConfig(target_accuracy=1.0, max_epochs=3, batch_size=32))
    assert record.epochs == 3
    assert record.reached_target is False


def test_no_epoch_cap_trains_to_the_target_and_raises_at_the_safety_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _blobs(128)
    cfg = TrainConfig(target_accuracy=0.9, max_epochs=None, lr=1e-2, batch_size=32)
    assert cfg.epoch_limit == UNCAPPED_EPOCH_LIMIT == 1000
    record = fit(_model(), data, cfg)
    assert record.reached_target is True and record.train_accuracy >= 0.9
    # Random labels never reach 100 %: with no cap, the (here lowered) safety limit raises instead of
    # looping forever.
    monkeypatch.setattr("forgetting.training.UNCAPPED_EPOCH_LIMIT", 4)
    g = torch.Generator().manual_seed(1)
    noisy = Split(data.images, torch.randint(0, 2, (128,), generator=g))
    rec = Recorder()
    with pytest.raises(TrainingLimitError, match="safety limit of 4 epochs"):
        fit(
            _model(), noisy, TrainConfig(target_accuracy=1.0, max_epochs=None, batch_size=32), callbacks=[rec]
        )
    assert len(rec.epochs) == 4
    with pytest.raises(ConfigError, match="cosine"):
        TrainConfig(max_epochs=None, schedule="cosine")


def test_eval_accuracy_source_matches_evaluate() -> None:
    data = _blobs(64)
    model = _model()
    record = fit(model, data, TrainConfig(target_accuracy=1.0, max_epochs=2, accuracy_source="eval"))
    assert record.train_accuracy == pytest.approx(evaluate_accuracy(model, data))


def test_same_seed_same_weights_different_seed_differs() -> None:
    data = _blobs(64)
    weights = []
    for seed in (3, 3, 4):
        model = _model(0)
        fit(model, data, TrainConfig(epochs=2, batch_size=16), seed=seed)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_fit_leaves_global_rng_untouched() -> None:
    model, data = _model(), _blobs(32)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, data, TrainConfig(epochs=1))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("schedule", ["constant", "plateau", "cosine"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizers_and_schedules_train(optimizer: str, schedule: str) -> None:
    data = _blobs(128)
    lr = 1e-2 if optimizer == "adam" else 5e-2
    cfg = TrainConfig(optimizer=optimizer, schedule=schedule, epochs=15, lr=lr, batch_size=32)
    model = _model()
    fit(model, data, cfg)
    assert evaluate_accuracy(model, data) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"optimizer": "adamw"}, "train.optimizer"),
        ({"schedule": "step"}, "train.schedule"),
        ({"target_accuracy": 1.5}, "train.target_accuracy"),
        ({"target_accuracy": None}, "target_accuracy"),
        ({"min_epochs": 5, "max_epochs": 2}, "min_epochs"),
        ({"epochs": 0}, "train.epochs"),
        ({"batch_size": 0}, "train.batch_size"),
    ],
)
def test_bad_config_names_the_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**kwargs)


def test_augment_keeps_masks_aligned_with_images() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 5, (6, 10, 12), generator=g)
    images = masks[:, None].float()  # the image encodes its own mask
    x, y = augment_batch(images, masks, padding=3, flip=True, generator=g, ignore_index=-1)
    assert x.shape == images.shape and y.shape == masks.shape
    valid = y != -1
    assert torch.equal(x[:, 0][valid], y[valid].float())
    assert torch.all(x[:, 0][~valid] == 0)  # padded pixels are zero in the image and ignored in the mask
    assert not torch.equal(y, masks)  # something moved


def test_augment_labels_unchanged_for_classification() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 8, 8)
    labels = torch.arange(8)
    x, y = augment_batch(images, labels, padding=2, flip=True, generator=g)
    assert torch.equal(y, labels)
    assert x.shape == images.shape


def test_segmentation_fit_with_ignore_index_and_class_weights() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (8, 1, 6, 6), generator=g, dtype=torch.uint8)
    masks = (images[:, 0] > 127).long()
    masks[:, 0, :] = 255  # an ignored row
    model = nn.Conv2d(1, 2, 1)
    record = fit(
        model,
        Split(images, masks),
        TrainConfig(epochs=150, lr=1e-1, augment=True),
        class_weights=torch.tensor([1.0, 2.0]),
        ignore_index=255,
    )
    assert record.epochs == 150
    assert evaluate_accuracy(model, Split(images, masks), ignore_index=255) > 0.9


def test_a_step_budget_ends_mid_epoch_and_the_batch_transform_sees_every_batch():
    data = _blobs(40)  # batch 16: 3 batches per epoch
    seen: list[tuple[int, torch.Generator]] = []

    def transform(x, y, generator):
        seen.append((x.shape[0], generator))
        return x.flip(-1), y

    recorder = Recorder()
    record = fit(
        _model(),
        data,
        TrainConfig(epochs=5, batch_size=16, target_accuracy=None),
        seed=3,
        callbacks=[recorder],
        max_steps=5,
        batch_transform=transform,
    )
    assert (record.steps, record.epochs) == (5, 2)  # 3 steps of epoch 1, 2 of epoch 2, then it stops
    assert [b for b, _ in seen] == [16, 16, 8, 16, 16]
    assert all(isinstance(g, torch.Generator) and g is seen[0][1] for _, g in seen)
    assert recorder.steps == [(1, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    assert recorder.epochs == [(1, 3), (2, 5)]  # the cut epoch still ends


def test_a_step_budget_at_an_epoch_boundary_starts_no_empty_epoch():
    recorder = Recorder()
    record = fit(
        _model(),
        _blobs(32),
        TrainConfig(epochs=4, batch_size=16, target_accuracy=None),
        callbacks=[recorder],
        max_steps=4,
    )
    assert (record.steps, record.epochs) == (4, 2) and recorder.epochs == [(1, 2), (2, 4)]
