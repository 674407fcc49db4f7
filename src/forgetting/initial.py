"""The seeded initial labelled set of an active-learning experiment (design §2, step 1)."""

from __future__ import annotations

import numpy as np
import torch

from forgetting.exceptions import PoolExhaustedError, check_choice

__all__ = ["INITIAL_SELECTIONS", "initial_labeled_set", "uniform_initial_set"]

#: How the initial labelled set is drawn.
INITIAL_SELECTIONS = ("stratified", "uniform")


def uniform_initial_set(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    """``size`` of ``n`` rows drawn uniformly without replacement: sorted int64 ``[size]``.

    Raises:
        PoolExhaustedError: ``size > n``.
    """
    if size > n:
        raise PoolExhaustedError(f"initial_size={size} exceeds the {n} training samples")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def initial_labeled_set(
    labels: torch.Tensor, size: int, *, selection: str = "stratified", seed: int = 0
) -> np.ndarray:
    """The seeded initial labeled set: int64 ``[size]`` sorted indices into ``labels`` (int64 ``[N]``).

    ``stratified`` takes ``size // C`` of each class and fills the remainder from a seeded uniform draw of the
    rest; ``uniform`` draws ``size`` samples uniformly (:func:`uniform_initial_set`). Different seeds give
    different sets. Masks (int64 ``[N, H, W]``) have no per-sample class, so both selections draw segmentation
    sections uniformly.
    """
    y = labels.cpu().numpy()
    n = y.shape[0]
    if selection == "uniform" or y.ndim > 1:
        return uniform_initial_set(n, size, seed=seed)
    if size > n:
        raise PoolExhaustedError(f"initial_size={size} exceeds the {n} training samples")
    check_choice("initial_selection", selection, INITIAL_SELECTIONS)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = size // len(classes)
    keys = rng.random((n,))
    order = np.lexsort((keys, y))  # by class, random within class
    starts = np.searchsorted(y[order], classes)
    counts = np.bincount(np.searchsorted(classes, y), minlength=len(classes))
    take = np.minimum(counts, per_class)
    chosen = np.concatenate([order[s : s + t] for s, t in zip(starts, take, strict=True)])
    if chosen.size < size:
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=size - chosen.size, replace=False)])
    return np.sort(chosen).astype(np.int64)
