"""Lightning and Hugging Face

Learning dynamics inside the two most common training frameworks, with the callbacks of
`forgetting.integrations` (extras `forgetting[lightning]` and `forgetting[transformers]`; see
[Lightning and Hugging Face](../guide/integrations.md) and the [Integrations](../reference/integrations.md)
reference). Both callbacks predict a set after every epoch, in eval mode and without augmentation, on the
trainer's device, count its events in `callback.tracker`, and can write a per-epoch data map in the
dataset-cartography format.

This page runs the two example scripts of the repository (the tests run them too).
"""

# %% [markdown]
# ## PyTorch Lightning
#
# `examples/lightning_dynamics.py`: a `LightningModule` and a `LightningDataModule` on 1,500 real MNIST
# digits. First a plain `Trainer.fit` with a `ForgettingCallback` that observes the datamodule's
# `pool_dataloader()`; then active learning with GauSS, where `lightning_train_fn` builds a fresh
# `Trainer` per round to fit the loop's seeded model on the labelled rows.
#
# ```python
# --8<-- "examples/lightning_dynamics.py"
# ```

# %%
import logging
import runpy
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
logging.getLogger("lightning").setLevel(logging.ERROR)  # Lightning's hints about workers and devices
warnings.filterwarnings("ignore", module="lightning")
lightning_run = runpy.run_path(str(ROOT / "examples" / "lightning_dynamics.py"), run_name="__main__")

# %% [markdown]
# ## Hugging Face `Trainer`
#
# `examples/transformers_dynamics.py`: a tiny BERT built from a config (no download) classifies
# synthetic token sequences; a `ForgettingTrainerCallback` observes the training set itself, with its
# labels, after every epoch, and writes the cartography data map.
#
# ```python
# --8<-- "examples/transformers_dynamics.py"
# ```

# %%
hf_run = runpy.run_path(str(ROOT / "examples" / "transformers_dynamics.py"), run_name="__main__")

# %% [markdown]
# ## A data map
#
# The cartography files hold every sample's logits after every epoch. From them, *confidence* (the mean
# probability of the true class over the epochs) against *variability* (its standard deviation) is the
# data map of Swayamdipta et al. (2020); the colour is the switch count that the same callback counted.

# %%
import matplotlib.pyplot as plt
import numpy as np

from forgetting.cartography import read_cartography

dynamics = read_cartography("runs/transformers-example")
logits = np.stack(
    [np.asarray(dynamics[i]["logits"], dtype=np.float64) for i in sorted(dynamics)]
)  # [N, E, K]
gold = np.array([dynamics[i]["gold"] for i in sorted(dynamics)])
probs = np.exp(logits - logits.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
p_true = probs[np.arange(len(gold)), :, gold]  # [N, E]
fig, ax = plt.subplots(figsize=(5, 3.6))
points = ax.scatter(
    p_true.std(1), p_true.mean(1), c=hf_run["tracker"].switches.cpu().numpy(), cmap="viridis", s=14
)
fig.colorbar(points, ax=ax, label="switches")
ax.set(xlabel="variability", ylabel="confidence", title=f"data map of {len(gold)} training samples")
quartiles = {
    name: np.percentile(v, [25, 50, 75]).round(3).tolist()
    for name, v in [("variability", p_true.std(1)), ("confidence", p_true.mean(1))]
}
print(f"{len(gold)} samples, {logits.shape[1]} epochs; quartiles: {quartiles}")
