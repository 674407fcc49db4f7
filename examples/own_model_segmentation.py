"""Active learning with your own segmenter, training loop and Dataset (segmentation).

Run: python examples/own_model_segmentation.py   (about 30 s on 2 CPU cores)
"""

import torch
from torch import nn
from torch.utils.data import Dataset

import forgetting
from forgetting import DatasetSource, LoopConfig, SegmentationTask, TrainRecord, run_active_learning


class Sections(Dataset):
    """Your Dataset of (image, mask) items. Here synthetic seismic sections with 6 facies (255 = void)."""

    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        x = self.split.images[i].float() / 255
        return (x - 0.5) / 0.25, self.split.targets[i]


class EncoderDecoder(nn.Module):
    """Your segmenter: logits [B, K, H, W]. `features(x)` (a feature map; averaged) feeds coreset."""

    def __init__(self, num_classes, width=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                     nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 2, stride=2), nn.ReLU(),
                                     nn.Dropout2d(0.1))
        self.head = nn.Conv2d(width, num_classes, 1)

    def features(self, x):
        return self.encoder(x)

    def forward(self, x):
        h, w = x.shape[-2:]
        return self.head(self.decoder(self.encoder(x)))[..., :h, :w]


def train(model, labeled, observer):
    """Your loop. `labeled.loss` is cross entropy with the task's class weights (from this round's masks)
    and ignore index; use your own loss if you prefer."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    for _ in range(15):
        for x, y in labeled.loader(batch_size=4):
            if torch.rand(()) < 0.5:  # left-right flips keep a seismic section plausible
                x, y = x.flip(-1), y.flip(-1)
            loss = labeled.loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        observer.epoch_end(model)
    return TrainRecord(epochs=15, steps=0)


seismic = forgetting.load_dataset("seismic-synthetic", seed=0, inlines=16, crosslines=16, depth=32)
task = SegmentationTask(seismic.num_classes, ignore_index=255, reduction="top-q", class_names=seismic.classes)
config = LoopConfig(model=EncoderDecoder, model_options={"num_classes": seismic.num_classes},
                    strategy="switch", train_fn=train, initial_size=4, query_size=2, rounds=3, seed=0)
pool = DatasetSource(Sections(seismic.train))
test = DatasetSource(Sections(seismic.test))
for record in run_active_learning(pool, {"test": test}, seismic.num_classes, config, task=task):
    print(f"{record.n_labeled} sections: test mIoU {record.metrics['test']['miou']:.3f}, "
          f"queried {record.query_indices.tolist()}")
