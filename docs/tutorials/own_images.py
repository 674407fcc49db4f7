"""Your own images: a labelling project

You have a folder of unlabelled images and a budget of labels. A labelling project chooses, round by
round, which images a person should label next: the first batch with a class-agnostic k-center on the
pixels (nothing is labelled yet), then GauSS on the switch counts of a model trained on the labels so far.
Every step has a command (`forgetting init-project`, `query`, `label`, `status`) and a Python method; this
tutorial uses Python, and [Choosing what to label in your own data](../guide/labelling.md) the commands.

The "person" here is a script that reads the true labels of 300 real MNIST digits saved as PNG files, so
the tutorial runs by itself in about half a minute.
"""

# %%
import csv
from pathlib import Path

import torch
from PIL import Image

from forgetting import init_project, load_dataset

mnist = load_dataset("mnist-5k", seed=0)
names = [str(c) for c in range(10)]
photos = Path("photos")
photos.mkdir()
truth = {}  # what the person would answer, by file name
rows_300 = torch.randperm(len(mnist.train), generator=torch.Generator().manual_seed(0))[:300].tolist()
for i in rows_300:
    name = f"digit-{i:04d}.png"
    Image.fromarray(mnist.train.images[i, 0].numpy()).save(photos / name)  # 8-bit grayscale PNG
    truth[name] = names[int(mnist.train.labels[i])]
project = init_project("digits-project", photos, classes=names, train={"max_epochs": 30})
print(f"project with {len(truth)} images, classes {names}")

# %% [markdown]
# ## Round 0: nothing labelled yet
#
# With no labels no model can be trained, so the first query uses `kcenter-pixels`: a greedy k-center on
# downsampled pixels, which spreads the first batch over the look of the data. The query writes
# `rounds/0/query.csv` (rank, item, score, an empty `label` column), a Label Studio task file and an HTML
# page with thumbnails.

# %%
first = project.query(20, strategy="kcenter-pixels")
print(
    f"round {first.round}: {len(first.items)} images to label, files in {first.directory.name}/:",
    sorted(p.name for p in first.directory.iterdir()),
)
with (first.directory / "query.csv").open(newline="") as fh:
    rows = list(csv.DictReader(fh))
print("columns:", list(rows[0]))

# %% [markdown]
# ## The person labels them
#
# Fill in the `label` column (in a spreadsheet, or by importing a Label Studio export) and import the file.
# Importing the same file twice changes nothing; a label that contradicts an earlier one is an error that
# names the item, unless you pass `overwrite=True`.

# %%
for row in rows:
    row["label"] = truth[row["item"]]
with (first.directory / "query.csv").open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(project.import_labels(first.directory / "query.csv"))

# %% [markdown]
# ## Round 1: GauSS on a model trained on those labels
#
# The project's model (`small-cnn` by default) is trained on the 20 labelled images until 92 % training
# accuracy; while it trains, the 280 unlabelled images are predicted after every epoch and their switches
# counted. GauSS then samples from the high-switch mode. The ranked list comes with the model's
# prediction and the score of every image.

# %%
second = project.query(20)
print(
    f"round {second.round}: strategy {second.strategy}, trained on {second.n_labeled} labels, "
    f"chose from {second.n_pool}"
)
print("rank  item            switches  model says  confidence  truth")
for item in second.items[:8]:
    print(
        f"{item.rank:4}  {item.item:14}  {item.score:8.0f}  {item.predicted!s:10}  {item.confidence:10.2f}  "
        f"{truth[item.item]}"
    )
