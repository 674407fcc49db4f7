"""Forgetting-guided augmentation

Does adding variety exactly where a segmenter keeps forgetting help it? `forgetting augment` answers with a
controlled experiment. Per seed it trains a **baseline**, computes the baseline's per-pixel forgetting
maps on the training sections, selects the frequently forgotten regions, adds restyled copies of those
sections in which only the selected pixels change (labels unchanged), and retrains from the same initial
weights, with the same batch-order seed and **exactly the same number of optimizer steps** (`ours`). The
`standard` arm is the lab code's augmentation (±10° rotations, left-right flips), and `standard+ours`
both.

This is the default experiment (`forgetting augment`) cut down to one seed, the arms `baseline` and
`ours`, and a 16 x 16 x 32 volume (32 training sections): about half a minute. With one seed and a
small volume, read it as the machinery at work, not as a verdict. The measured table of the full default is
on the
[Forgetting-guided augmentation](../guide/augmentation.md) page.
"""

# %%
from forgetting.segmentation.augment_protocol import parse_augment_config, run_augment_protocol

config = parse_augment_config("""
arms = ["baseline", "ours"]
threads = 1
[model_options]
base = 8
depth = 2
[data.options]
inlines = 16
crosslines = 16
depth = 32
stride = 1
[train]
epochs = 30
[style]
method = "random-conv"   # weight-free styles: "fda", "histogram", "random-conv"
copies = 2               # restyled copies per selected section
""")
result = run_augment_protocol(config, "runs/augment-tutorial", seeds=[0])
print(result.table)

# %% [markdown]
# `FF` is *frequently forgotten* (forgotten at least `tau = 2` times): the number of such regions and
# their area in pixels, on the training sections and on the test volume. The run directory holds the
# same table (`table.md`), every number per seed (`summary.json`) and an HTML report with the per-class
# accuracy and examples of original against restyled sections.

# %%
import matplotlib.pyplot as plt

print(sorted(p.name for p in result.report.parent.iterdir()))
examples = sorted(result.report.parent.glob("*.png"))
for png in examples[:2]:
    fig, ax = plt.subplots(figsize=(10, 7))
    ax.imshow(plt.imread(png))
    ax.set_title(png.name, fontsize=9)
    ax.axis("off")
