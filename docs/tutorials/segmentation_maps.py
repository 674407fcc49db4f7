"""Forgetting maps for segmentation

A forgetting map counts, for every pixel of every training section, how often the segmenter's prediction
went from correct to wrong while it trained (the per-pixel form of the ICIP 2021 and TGRS 2022 papers).
Pixels that are forgotten again and again form *frequently forgotten regions*; the papers relate them to
the class boundaries. This tutorial trains a small U-Net on synthetic seismic sections (six facies, with
faults, folds and a salt dome), observes every training pixel after every epoch, and analyses the maps.

`forgetting maps` does the same from a config, at a larger size, and writes an HTML report
([Segmentation](../guide/segmentation.md)). Here the volume is 16 x 16 x 32: about half a minute on one
core.
"""

# %%

from forgetting import analyze_forgetting, build_model, fit_segmentation, load_dataset, predict_segmentation
from forgetting.segmentation.training import segmentation_train_config

seismic = load_dataset("seismic-synthetic", seed=0, inlines=16, crosslines=16, depth=32)
train = seismic.train  # images uint8 [N, 1, H, W], masks int64 [N, H, W] (255 = void)
print(f"{len(train)} training sections of {tuple(train.images.shape[-2:])}, classes {list(seismic.classes)}")
model = build_model("unet", 1, seismic.num_classes, seed=0, base=8, depth=2)
fitted = fit_segmentation(
    model,
    train,
    num_classes=seismic.num_classes,
    ignore_index=255,
    seed=0,
    config=segmentation_train_config(20, lr=2e-3, batch_size=4),
)
tracker = fitted.trackers["train"].tracker  # an EventTracker of shape (N, H, W): one entry per pixel
print(f"{fitted.record.epochs} epochs; {fitted.trackers['train'].passes} observation passes of every pixel")

# %% [markdown]
# ## The analysis
#
# `analyze_forgetting` turns the tracker into maps and numbers: frequently forgotten pixels (forgotten at
# least `tau = 2` times), their connected regions, per-class forgetting rates, and Spearman's rho between
# a pixel's forgetting count and its distance to the nearest label boundary (negative: pixels near a
# boundary are forgotten more) and its final softmax margin.

# %%
_, margin = predict_segmentation(model, train.images)
maps = analyze_forgetting(
    tracker, train.targets, class_names=seismic.classes, ignore_index=255, margin_N_H_W=margin
)
print(f"frequently forgotten regions: {maps.regions.count}, covering {int(maps.frequent.sum())} pixels")
print(f"rho(forgetting, distance to boundary) = {maps.distance_correlation.rho:+.3f}")
print(f"rho(forgetting, final margin)         = {maps.margin_correlation.rho:+.3f}")
print("class             forgotten at least once")
for name, rate in zip(seismic.classes, maps.per_class["fraction_forgotten"], strict=True):
    print(f"{name:17} {rate:.3f}")

# %% [markdown]
# ## One section
#
# The section with the most forgetting events: its image, its labels, the forgetting count of every pixel
# and the epoch from which each pixel stayed correct. Forgetting concentrates along the boundaries
# between facies and on the thin layers.

# %%
import matplotlib.pyplot as plt
import numpy as np

k = int(np.argmax(maps.forgetting.reshape(len(train), -1).sum(axis=1)))
panels = [
    ("image", train.images[k, 0].numpy(), "gray"),
    ("labels", np.ma.masked_equal(maps.masks[k], 255), "tab10"),
    ("forgetting count", maps.forgetting[k], "magma"),
    ("learned for good (epoch)", maps.learned_epoch[k], "viridis"),
]
fig, axes = plt.subplots(1, 4, figsize=(10, 3.2))
for ax, (title, image, cmap) in zip(axes, panels, strict=True):
    shown = ax.imshow(image, cmap=cmap, aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if title != "image":
        fig.colorbar(shown, ax=ax, fraction=0.046)
fig.suptitle(f"training section {k}")
