"""Explaining a classifier

`forgetting profile` (in Python `forgetting.profile(...)`) trains one classifier while it watches every
training sample, and explains the model sample by sample: which examples it forgot and relearned, which it
learned once and never forgot, where each sits on the data map (confidence against variability), the area
under the margin (AUM), and which labels are likely wrong. [Explain a classifier](../guide/profile.md) has
every column and option.

To see whether the label-error flags work, this tutorial flips 10 % of the labels of 1,000 real MNIST
digits on purpose, then asks the profile to find them. Three short trainings (the profile, and the two AUM
threshold runs): well under a minute on one core.
"""

# %%
import numpy as np
import torch

import forgetting
from forgetting import Dataset, Split, TrainConfig
from forgetting.profile import flip_labels

mnist = forgetting.load_dataset("mnist-5k", seed=0)
rows = torch.randperm(len(mnist.train), generator=torch.Generator().manual_seed(0))[:1000]
train = mnist.train.subset(rows)  # images uint8 [1000, 1, 28, 28], labels int64 [1000]
noisy, flipped = flip_labels(train.labels.numpy(), 0.1, "uniform", 10, seed=0)  # int64 [N], bool [N]
data = Dataset(
    "mnist-1k-noisy",
    mnist.classes,
    {"train": Split(train.images, torch.from_numpy(noisy)), "test": mnist.test},
)
result = forgetting.profile(
    data,
    model="small-cnn",
    model_options={"width": 8},
    train=TrainConfig(epochs=8, batch_size=32, lr=3e-3),
    label_flipped=flipped,
    out_dir="runs/profile",
)
d = result.dynamics  # numpy arrays of length N, one per read-out
print(
    f"{result.n} samples, test accuracy {result.test_accuracy:.3f}; "
    f"unforgettable {int((d.forgetting == 0).sum() - d.never_learned.sum())}, "
    f"forgotten at least once {int((d.forgetting > 0).sum())}, never learned {int(d.never_learned.sum())}"
)
print("files:", {k: v.name for k, v in result.files.items()})

# %% [markdown]
# ## Did it find the flipped labels?
#
# The flags are AUM with threshold samples: two more runs relabel a random ninth of the data to a fake
# eleventh class, and a sample whose AUM falls below the 99th percentile of those surely-mislabelled samples
# is flagged. The rankings by a single score are compared at k = the number of flipped labels. A flipped
# label is usually *never learned* (forgetting count 0), so the forgetting ranking puts never-learned
# samples first, as Toneva et al. do.

# %%
flags = result.mislabel.flagged
k = int(flipped.sum())
print(
    f"{k} labels flipped; flagged {int(flags.sum())}: precision {flipped[flags].mean():.2f}, "
    f"recall {flags[flipped].mean():.2f}"
)
forgettable = d.forgetting + np.where(d.never_learned, np.inf, 0.0)  # never learned: the most forgettable
for name, score in [
    ("aum (low first)", -d.aum),
    ("forgetting (high first)", forgettable),
    ("final loss (high first)", d.final_loss),
]:
    top = np.argsort(-score, kind="stable")[:k]
    print(f"precision at k of {name:24}: {flipped[top].mean():.2f}")

# %% [markdown]
# ## The data map
#
# Every sample at its mean probability of its (possibly wrong) label against that probability's standard
# deviation over the epochs. On a long run, easy samples sit top left, hard ones bottom left and ambiguous
# ones to the right; in these 8 epochs even the easy samples climb from chance, so the kept labels spread
# to the right. The flipped labels (orange) stay bottom left: the model never came to believe them, and
# their AUM (right) is negative, below the fitted thresholds.

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].scatter(d.variability[~flipped], d.confidence[~flipped], s=6, c="0.6", label="label kept")
axes[0].scatter(d.variability[flipped], d.confidence[flipped], s=10, c="C1", label="label flipped")
axes[0].set(xlabel="variability", ylabel="confidence", title="data map")
axes[0].legend(loc="upper right")
bins = np.linspace(np.nanmin(d.aum), np.nanmax(d.aum), 40)
axes[1].hist(d.aum[~flipped], bins=bins, color="0.6", label="label kept")
axes[1].hist(d.aum[flipped], bins=bins, color="C1", label="label flipped")
for threshold in result.mislabel.thresholds:
    axes[1].axvline(threshold, color="k", ls="--", lw=1)
axes[1].set(xlabel="area under the margin", ylabel="samples", title="AUM, with the fitted thresholds")
axes[1].legend()
