"""Seeded, stratified index splits.

Both helpers allocate per-class quotas by largest remainder (so every class keeps its share, to within one
sample) and draw the members of each class at random with ``numpy.random.default_rng(seed)``. They are
vectorised: one permutation, one stable sort by label, and a rank-within-class comparison.
"""

from __future__ import annotations

import numpy as np
import torch

from forgetting.data.dataset import Dataset, Split
from forgetting.exceptions import ConfigError


def _labels_numpy(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1:
        raise ConfigError(f"labels must be 1-D [N], got shape {array.shape}")
    return array


def _quotas(counts_K: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts_K`` (largest remainder, random tie-break)."""
    n = int(counts_K.sum())
    exact = counts_K * (total / n) if n else np.zeros_like(counts_K, dtype=np.float64)
    quota = np.floor(exact).astype(np.int64)
    short = total - int(quota.sum())
    if short > 0:
        remainder = exact - quota
        # Sort by remainder (largest first), random order among ties; never exceed a class's count.
        order = np.lexsort((rng.random(len(counts_K)), -remainder))
        room = counts_K[order] - quota[order]
        order = order[room > 0]
        quota[order[:short]] += 1
    return quota


def _stratified_pick(labels: np.ndarray, n_pick: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask ``[N]`` choosing ``n_pick`` elements, stratified by ``labels``."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = _quotas(counts, n_pick, rng)
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(inverse[perm], kind="stable")]  # grouped by class, random within a class
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(labels)) - starts[inverse[order]]
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[order[rank < quota[inverse[order]]]] = True
    return chosen


def stratified_split(
    labels: torch.Tensor | np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified train/test split of ``range(N)``.

    Args:
        labels: ``[N]`` class ids (any integer or string dtype).
        test_fraction: share of the samples in the test split, in ``(0, 1)``; the test split gets
            ``round(test_fraction * N)`` samples, spread over classes in proportion to their size.
        seed: the random seed; the same seed gives the same split.

    Returns:
        ``(train_idx, test_idx)``: sorted ``int64`` tensors that partition ``range(N)``.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    array = _labels_numpy(labels)
    n_test = round(float(test_fraction) * len(array))
    rng = np.random.default_rng(seed)
    test_mask = _stratified_pick(array, n_test, rng)
    return (
        torch.from_numpy(np.flatnonzero(~test_mask)).to(torch.int64),
        torch.from_numpy(np.flatnonzero(test_mask)).to(torch.int64),
    )


def stratified_subset(labels: torch.Tensor | np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices of ``range(N)`` drawn without replacement, stratified by ``labels``.

    Classes get ``n`` in proportion to their size (largest remainder; with fewer slots than classes, the
    classes that receive one are drawn at random).

    Returns:
        Sorted ``int64 [n]``.

    Raises:
        ConfigError: ``n`` negative or larger than ``N``.
    """
    array = _labels_numpy(labels)
    if isinstance(n, bool) or not 0 <= int(n) <= len(array):
        raise ConfigError(
            f"subset size n must be an integer in 0..{len(array)} (the number of labels), got {n!r}"
        )
    rng = np.random.default_rng(seed)
    mask = _stratified_pick(array, int(n), rng)
    return torch.from_numpy(np.flatnonzero(mask)).to(torch.int64)


def split_dataset(
    name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    *,
    seed: int,
    test_fraction: float,
    source: str,
    meta: dict[str, object] | None = None,
) -> Dataset:
    """A classification :class:`Dataset` whose train/test splits are a seeded stratified split.

    Args:
        images: ``uint8 [N, C, H, W]``.
        labels: ``int64 [N]``.
        test_fraction: share of samples in ``"test"`` (see :func:`stratified_split`).
    """
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    info: dict[str, object] = {
        "split": "stratified",
        "seed": seed,
        "test_fraction": float(test_fraction),
        "whole_set": "dataset.split('all') is every sample",
    }
    info.update(meta or {})
    return Dataset(
        name=name,
        classes=classes,
        splits={
            "train": Split(images[train_idx], labels[train_idx]),
            "test": Split(images[test_idx], labels[test_idx]),
        },
        task="classification",
        source=source,
        meta=info,
    )
