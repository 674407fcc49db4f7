"""Your own model and training loop

The active-learning loop is open at four seams (model, training, data, task; see
[Your own model, training loop and data](../guide/own-model.md)). This tutorial runs
`examples/own_model_classification.py`, a complete script that plugs in all three of its own pieces:

- **data**: a plain `torch.utils.data.Dataset` of `(x, y)` items with its own normalisation, wrapped in
  `forgetting.DatasetSource` (read lazily through a `DataLoader`);
- **model**: a plain `nn.Module` with a `features(x)` method (the embedding hook that `coreset` and
  `badge` use; GauSS does not need it);
- **training**: a function `train(model, labeled, observer)` with its own optimizer, augmentation (random
  one-pixel shifts) and the papers' stopping rule (`StoppingRule`: 92 % training accuracy), which calls
  `observer.epoch_end(model)` after every epoch so that the loop can count the pool's switches.

The script, as it is in the repository (the tests run it too):

```python
--8<-- "examples/own_model_classification.py"
```
"""

# %%
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
example = runpy.run_path(str(ROOT / "examples" / "own_model_classification.py"), run_name="__main__")

# %% [markdown]
# ## What the loop did with it
#
# Every round the loop called `Net()` inside a forked RNG seeded by the seed and the round, trained it
# with `train`, and, because GauSS needs switch counts, predicted the 500 candidates of the pool in eval
# mode (without the one-pixel shifts) after every epoch. The last round only trains and evaluates (there is
# nothing left to query in the budget), so it tracked nothing: its record has no dynamics, and its
# `track` time is zero.

# %%
record = example["record"]
print(
    f"round {record.round}: {record.n_labeled} labels, {record.train.epochs} epochs, "
    f"training accuracy {record.train.train_accuracy:.3f}, dynamics: {sorted(record.dynamics) or 'none'}"
)
print("seconds per phase:", {k: round(v, 2) for k, v in record.seconds.items()})
