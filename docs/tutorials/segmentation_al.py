"""Active learning for segmentation

Which sections should an interpreter label next? The same loop as for classification, with a
segmentation task: every round trains a fresh U-Net on the labelled sections (class weights from their
masks, the void label 255 ignored), observes **every pixel** of the unlabelled sections after every epoch
(one `EventTracker` of shape `(P, H, W)`, 4 bytes per pixel), and reduces the pixel switch counts to one
score per section (`reduction`: `mean`, `sum`, `top-q` or `class-balanced`). Here `switch` (FALSE) and
`random` on synthetic seismic sections, scored by mIoU on an independent test volume.

`forgetting run examples/seismic-al.toml` runs the full grid (six strategies, three seeds) with a store and
a report; [Benchmarks](../benchmarks.md#active-learning-for-segmentation) has its table. This is one seed,
three queries of two sections, about half a minute: read the numbers as the machinery at work, not as a
verdict on the strategies.
"""

# %%
from forgetting import LoopConfig, SegmentationTask, TrainConfig, load_dataset, run_active_learning

seismic = load_dataset("seismic-synthetic", seed=0, inlines=16, crosslines=16, depth=32)
task = SegmentationTask(seismic.num_classes, ignore_index=255, reduction="top-q", class_names=seismic.classes)
records = {}
for strategy in ["random", "switch"]:
    config = LoopConfig(
        strategy=strategy,
        model="unet",
        model_options={"base": 8, "depth": 2},
        initial_size=4,
        query_size=2,
        rounds=3,
        seed=0,
        train=TrainConfig(lr=3e-3, batch_size=4, target_accuracy=0.95, min_epochs=10, max_epochs=80),
    )
    records[strategy] = list(
        run_active_learning(seismic.train, {"test": seismic.test}, seismic.num_classes, config, task=task)
    )
print("strategy  sections  test mIoU  queried")
for strategy, rounds in records.items():
    for r in rounds:
        print(f"{strategy:8}  {r.n_labeled:8}  {r.metrics['test']['miou']:9.3f}  {r.query_indices.tolist()}")

# %% [markdown]
# ## What `switch` queried, and why
#
# A segmentation round keeps, for each queried section, its image, the revealed mask, the round model's
# prediction and the pixel switch map (`record.query_arrays`). The sections FALSE picked are those whose
# pixels kept changing class; with `top-q` a section counts by its most unstable 10 % of pixels, so one
# unstable region is enough.

# %%
import matplotlib.pyplot as plt
import numpy as np

first = records["switch"][0]
arrays = first.query_arrays
fig, axes = plt.subplots(
    len(first.query_indices), 4, figsize=(8, 2.6 * len(first.query_indices)), squeeze=False
)
for row, index in enumerate(first.query_indices):
    panels = [
        ("image", arrays["images"][row, 0], "gray"),
        ("mask", np.ma.masked_equal(arrays["masks"][row], 255), "tab10"),
        ("prediction", arrays["pred"][row], "tab10"),
        ("pixel switches", arrays["switch_maps"][row], "magma"),
    ]
    for ax, (title, image, cmap) in zip(axes[row], panels, strict=True):
        ax.imshow(image, cmap=cmap, aspect="auto", **({"vmin": 0, "vmax": 9} if cmap == "tab10" else {}))
        ax.set_title(f"section {index}: {title}" if title == "image" else title, fontsize=9)
        ax.axis("off")
scores = first.query_scores
print(
    f"round 0 scores of the queried sections (top-q mean of pixel switches): {np.round(scores, 2).tolist()}"
)
