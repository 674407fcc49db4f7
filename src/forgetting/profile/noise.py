"""Synthetic label noise, for measuring how well a score finds mislabelled samples.

Exactly ``round(rate * N)`` samples, drawn uniformly without replacement with a seeded generator, get a
wrong label:

* ``uniform``: a label drawn uniformly among the ``K - 1`` other classes;
* ``class-conditional``: every class ``c`` is flipped to one fixed other class ``pi(c)``, where ``pi`` is a
  seeded random derangement of the classes (a permutation without fixed points; "pair flipping").
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from forgetting.exceptions import ConfigError

__all__ = ["NOISE_KINDS", "flip_labels", "flip_map"]

NoiseKind = Literal["uniform", "class-conditional"]

#: The values of ``kind``.
NOISE_KINDS: tuple[str, ...] = ("uniform", "class-conditional")
"""The kinds of synthetic label noise :func:`flip_labels` makes: ``uniform`` (a flipped label becomes any
other class) or ``class-conditional`` (every class to one fixed other class, :func:`flip_map`)."""


def flip_map(num_classes: int, seed: int) -> np.ndarray:
    """int64 ``[K]``: the seeded derangement ``pi`` of ``class-conditional`` noise (``pi[c] != c``)."""
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got {num_classes}")
    rng = np.random.default_rng([seed, 1])
    while True:
        perm = rng.permutation(num_classes)
        if not np.any(perm == np.arange(num_classes)):
            return perm.astype(np.int64)


def flip_labels(
    labels_N: np.ndarray, rate: float, kind: NoiseKind, num_classes: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(rate * N)`` labels.

    Args:
        labels_N: int ``[N]`` true labels in ``0..K-1``.
        rate: fraction of samples to mislabel, in ``[0, 1)``.
        kind: ``"uniform"`` or ``"class-conditional"`` (see the module docstring).
        num_classes: K.
        seed: seeds which samples flip and to what.

    Returns:
        ``(noisy_labels int64 [N], flipped bool [N])``; ``noisy_labels[flipped] != labels_N[flipped]``.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"label noise kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"label noise rate must be in [0, 1), got {rate}")
    labels = np.asarray(labels_N, dtype=np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ConfigError(f"labels must be [N] class ids in 0..{num_classes - 1}")
    n = labels.size
    rng = np.random.default_rng([seed, 0])
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.permutation(n)[: round(rate * n)]] = True
    noisy = labels.copy()
    if kind == "uniform":
        offset = rng.integers(1, num_classes, size=n)  # 1..K-1: never the true class
        noisy[flipped] = (labels[flipped] + offset[flipped]) % num_classes
    else:
        noisy[flipped] = flip_map(num_classes, seed)[labels[flipped]]
    return noisy, flipped
