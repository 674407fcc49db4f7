"""Validation and conversion helpers shared by the selectors and the strategies.

Conventions used throughout :mod:`forgetting.strategies`:

* a *selector* is a plain function ``(scores or features, n, *, seed) -> int64 [n]`` that returns positions
  into the array it was given, in selection order;
* a *strategy* scores the pool (``score(inputs) -> float [N]``) and hands the scores to a selector.

Scores are converted to the host once per selection (one transfer of ``N`` numbers), never per batch.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from forgetting.exceptions import ConfigError, InputError, PoolExhaustedError, ShapeError

#: Element budget of one chunked temporary (e.g. a block of a distance matrix): 2**24 float32 = 64 MiB.
CHUNK_ELEMENTS = 1 << 24


def check_n(n: object, n_pool: int) -> int:
    """Validate a query size against a pool size and return it as ``int``.

    Raises:
        ConfigError: ``n`` is not an integer or is smaller than 1.
        PoolExhaustedError: ``n`` is larger than ``n_pool``.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ConfigError(f"query size n must be an integer >= 1, got {n!r} of type {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ConfigError(f"query size n must be an integer >= 1, got {n}")
    if n > n_pool:
        raise PoolExhaustedError(
            f"asked for n={n} samples but the unlabeled pool holds only {n_pool}; "
            "lower the query size or the number of rounds"
        )
    return n


def check_seed(seed: object) -> int:
    """Validate a seed (a non-negative integer) and return it as ``int``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def as_numpy_1d(values: Any, name: str) -> np.ndarray:
    """A 1-D array (numpy, torch on any device, or a sequence) as host ``float64 [N]`` numpy (one copy)."""
    if isinstance(values, torch.Tensor):
        arr = values.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D [N], got shape {tuple(arr.shape)}")
    return arr


def check_rows(tensor: torch.Tensor, name: str, n_pool: int, ndim: int, row_dim: int = 0) -> torch.Tensor:
    """Check that ``tensor`` has ``ndim`` dimensions and ``n_pool`` rows along ``row_dim``; return it."""
    if tensor.ndim != ndim:
        raise ShapeError(
            f"strategy input {name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[row_dim] != n_pool:
        raise InputError(
            f"strategy input {name} has {tensor.shape[row_dim]} pool rows (dim {row_dim}) "
            f"but n_pool is {n_pool}; every input must be aligned with the pool"
        )
    return tensor


def working_float(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float32, or float64 if it already is float64 (half precision is upcast)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def positive_int_option(value: object, key: str) -> int:
    """Validate a strategy option that must be a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(f"strategy option {key!r} must be an integer >= 1, got {value!r}")
    return int(value)


def uniform_draws(generator: torch.Generator, size: int, device: torch.device) -> torch.Tensor:
    """``float64 [size]`` uniforms in ``[0, 1)`` drawn on the host by ``generator``, moved to ``device``.

    Drawing on the host keeps one seeded CPU generator valid for inputs on any device.
    """
    return torch.rand(size, generator=generator, dtype=torch.float64).to(device)
