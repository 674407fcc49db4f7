"""PyTorch Lightning: the ForgettingCallback inside a real lightning.Trainer, and active learning through
lightning_train_fn (mnist-5k, CPU)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

L = pytest.importorskip("lightning")

from forgetting import EventTracker, LoopConfig, run_active_learning  # noqa: E402
from forgetting.cartography import read_cartography  # noqa: E402
from forgetting.data import Split, load_dataset  # noqa: E402
from forgetting.exceptions import ConfigError  # noqa: E402
from forgetting.integrations.lightning import (  # noqa: E402
    ForgettingCallback,
    lightning_train_fn,
    pool_source,
)

MEAN, STD = 0.1307, 0.3081


@pytest.fixture(autouse=True)
def _restore_torch_flags():
    """``Trainer(deterministic=True)`` switches torch's deterministic algorithms on for the process."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def normalise(image: torch.Tensor) -> torch.Tensor:
    return (image.float() / 255 - MEAN) / STD


class Digits(Dataset):
    """(normalised image, label) items; ``shift`` > 0 adds a random translation (training augmentation)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 0, seed: int = 0) -> None:
        self.images, self.labels, self.shift = images, labels, shift
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int):
        x = normalise(self.images[i])
        if self.shift:
            dy, dx = (
                int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,), generator=self.generator)
            )
            x = torch.roll(x, (dy, dx), dims=(-2, -1))
        return x, int(self.labels[i])


def small_cnn() -> nn.Module:
    """A small CNN with BatchNorm and dropout, so that eval mode and train mode predict differently."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(16, 10),
    )


class DigitsModule(L.LightningModule):
    """Trains ``net`` (default a fresh :func:`small_cnn`) with SGD; logs its training accuracy."""

    def __init__(self, net: nn.Module | None = None, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.net = net if net is not None else small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("train_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
        return F.cross_entropy(logits, y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class DigitsDataModule(L.LightningDataModule):
    """Labelled training rows (augmented) and an unlabelled pool exposed through ``pool_dataloader()``."""

    def __init__(self, train: Split, pool: Split, batch_size: int = 32) -> None:
        super().__init__()
        self.train, self.pool, self.batch_size = train, pool, batch_size

    def setup(self, stage: str) -> None:
        self.train_set = Digits(self.train.images, self.train.labels, shift=2)
        self.pool_set = Digits(self.pool.images, self.pool.labels)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g)

    def pool_dataloader(self) -> DataLoader:
        return DataLoader(self.pool_set, batch_size=256)


class HandFed(L.Callback):
    """The reference: after each training epoch, eval-mode predictions of the pool fed to a tracker."""

    def __init__(self, pool: Split) -> None:
        self.x = normalise(pool.images)
        self.y = pool.labels
        self.tracker = EventTracker((len(self.y),))
        self.epochs = 0
        self.train_mode_seen: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_mode_seen.append(pl_module.training)  # the ForgettingCallback ran first: restored?
        self.epochs += 1
        pl_module.eval()
        with torch.no_grad():
            preds = pl_module(self.x).argmax(1)
        pl_module.train()
        self.tracker.update(torch.arange(len(self.y)), preds, self.y, epoch=self.epochs)


def trainer(callbacks: list, max_epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@lru_cache(maxsize=1)
def _digits() -> tuple[Split, Split, Split]:
    ds = load_dataset("mnist-5k", seed=0)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(ds.train), generator=g)
    test = ds.test.subset(torch.randperm(len(ds.test), generator=g)[:200])
    return ds.train.subset(order[:200]), ds.train.subset(order[200:600]), test


def test_callback_counts_equal_a_tracker_fed_by_hand() -> None:
    labelled, pool, _ = _digits()
    datamodule = DigitsDataModule(labelled, pool)
    forgetting = ForgettingCallback(
        targets="source", batch_size=128
    )  # the pool: datamodule.pool_dataloader()
    reference = HandFed(pool)
    L.seed_everything(0, verbose=False)
    module = DigitsModule()
    trainer([forgetting, reference], max_epochs=5).fit(module, datamodule=datamodule)

    tracker = forgetting.tracker
    assert tracker is not None and tracker.n == len(pool) and reference.epochs == 5
    assert reference.train_mode_seen == [True] * 5  # eval mode only during the observation
    for name in (
        "switches",
        "forgetting",
        "learning",
        "observations",
        "never_learned",
        "last_forgotten_epoch",
    ):
        assert torch.equal(tracker.read(name), reference.tracker.read(name)), name
    assert int(tracker.switches.sum()) > 0 and int(tracker.forgetting.sum()) > 0
    assert forgetting.observer.epochs == 5 and forgetting.observer.steps == 5 * 7  # 200 rows, batches of 32


def test_step_cadence_and_a_second_set(tmp_path) -> None:
    labelled, pool, _ = _digits()
    datamodule = DigitsDataModule(labelled, pool)
    datamodule.setup("fit")
    callback = ForgettingCallback(
        datamodule.pool_dataloader(),
        every=3,
        unit="step",
        train=Digits(labelled.images, labelled.labels),
        cartography=None,
    )
    L.seed_everything(0, verbose=False)
    trainer([callback], max_epochs=2).fit(DigitsModule(), datamodule=datamodule)
    assert callback.observer.steps == 14
    assert callback.tracker.observations.max() == 14 // 3
    assert callback.train_tracker is not None and callback.train_tracker.n == len(labelled)
    assert bool(callback.train_tracker.observed_with_targets.all())
    assert not bool(callback.tracker.observed_with_targets.any())  # the pool is unlabelled: switches only
    with pytest.raises(ConfigError, match="cartography needs the gold labels"):
        ForgettingCallback(datamodule.pool_dataloader(), cartography=tmp_path)
    with pytest.raises(ConfigError, match="no pool_dataloader"):
        pool_source(object())


def _lightning_run(wrap: bool) -> list:
    labelled, pool, test = _digits()
    datamodule = DigitsDataModule(labelled, pool)
    train_rows = pool_source(datamodule)  # the loop's rows: the datamodule's pool, labels as the oracle
    evals = {"test": pool_source(DigitsDataModule(labelled, test))}
    train_fn = lightning_train_fn(
        lambda callbacks: trainer(callbacks, max_epochs=3),
        module_factory=DigitsModule if wrap else None,
        batch_size=16,
        accuracy_key="train_acc",
    )
    model = small_cnn if wrap else DigitsModule  # the same network, built from the same seed
    config = LoopConfig(
        model=model,
        strategy="gauss",
        initial_size=20,
        query_size=10,
        rounds=2,
        seed=1,
        train_fn=train_fn,
        pool_subsample=150,
        device="cpu",
    )
    return run_active_learning(train_rows, evals, 10, config)


def test_active_learning_through_lightning_train_fn() -> None:
    records = _lightning_run(wrap=False)
    assert [r.n_labeled for r in records] == [20, 30, 40]
    for r in records[:2]:
        assert r.train.epochs == 3 and r.train.steps == 3 * -(-r.n_labeled // 16)
        assert r.dynamics["switches"].shape == (150,) and int(r.dynamics["observations"].max()) == 3
        assert len(r.query_indices) == 10 and r.seconds["track"] > 0
        assert r.samples["sample_id"].shape == (150,) and int(r.samples["observations"].max()) == 3
        np.testing.assert_array_equal(r.samples["switches"], r.dynamics["switches"])
        assert 0.0 <= r.train.train_accuracy <= 1.0
    assert not set(records[0].query_indices) & set(records[1].query_indices)
    assert 0.0 < records[-1].metrics["test"]["accuracy"] <= 1.0
    # the same round through a LightningModule that wraps the loop's plain network: identical queries
    wrapped = _lightning_run(wrap=True)
    assert [r.query_indices.tolist() for r in wrapped] == [r.query_indices.tolist() for r in records]


def test_lightning_train_fn_errors() -> None:
    labelled, pool, _ = _digits()
    train_rows = pool_source(DigitsDataModule(labelled, pool))
    base = {"strategy": "random", "initial_size": 20, "rounds": 0, "device": "cpu"}
    fit = lightning_train_fn(lambda callbacks: trainer(callbacks, max_epochs=1))
    plain = LoopConfig(model=small_cnn, train_fn=fit, **base)
    with pytest.raises(ConfigError, match=r"not a LightningModule.*module_factory"):
        run_active_learning(train_rows, {}, 10, plain)
    ignored = lightning_train_fn(lambda callbacks: trainer([], max_epochs=1))
    with pytest.raises(ConfigError, match="callbacks=callbacks"):
        run_active_learning(train_rows, {}, 10, LoopConfig(model=DigitsModule, train_fn=ignored, **base))


def test_readme_example_runs(tmp_path) -> None:
    """docs/guide/integrations.md's Lightning section is the tail of examples/lightning_dynamics.py (runs)."""
    root = Path(__file__).resolve().parents[1]
    script = root / "examples" / "lightning_dynamics.py"
    readme = (root / "docs" / "guide" / "integrations.md").read_text(encoding="utf-8")
    section = readme[readme.index("## PyTorch Lightning") : readme.index("## Hugging Face Trainer")]
    block = section.split("```python\n")[1].split("```")[0]
    assert 10 <= len(block.strip().splitlines()) <= 20 and block in script.read_text(encoding="utf-8")
    # one torch thread: on a loaded 2-core machine two threads make these tiny steps many times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rounds = [ln for ln in out.stdout.splitlines() if "labels: test accuracy" in ln]
    assert [ln.split()[0] for ln in rounds] == ["20", "40", "60"], out.stdout
    assert float(rounds[-1].split()[-1]) > 0.3
    written = tmp_path / "runs" / "lightning-example"
    with (written / "pool.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1000 and {r["observations"] for r in rows} == {"5"}
    assert len(read_cartography(written)[0]["logits"]) == 5
