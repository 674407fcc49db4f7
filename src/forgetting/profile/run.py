"""The profile pipeline: train one classifier while observing its training set, then explain it.

:func:`profile` (``forgetting.profile(...)``, the ``forgetting profile`` command) does, in order:

1. train the model on the labelled data with the built-in :func:`~forgetting.training.fit` (or the user's
   training function), feeding a :class:`~forgetting.profile.dynamics.DynamicsAccumulator` at presentation
   time (the default) or from eval-mode passes after every epoch;
2. evaluate it on the test set, when there is one;
3. flag likely mislabelled samples with AUM threshold samples
   (:func:`~forgetting.profile.mislabel.flag_mislabeled`; the rule and why are documented there);
4. optionally, Toneva et al.'s pruning experiment (:func:`~forgetting.profile.prune.prune`);
5. with ``out_dir``: the per-sample table (``samples.csv``, and ``samples.parquet`` with pyarrow),
   ``summary.json`` and the static HTML report ``report/index.html``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting.data.dataset import Dataset
from forgetting.data.source import DataSource
from forgetting.exceptions import ConfigError
from forgetting.models.factory import ModelRef
from forgetting.profile.mislabel import MislabelSettings, flag_mislabeled
from forgetting.profile.prune import prune as run_prune
from forgetting.profile.report import write_outputs
from forgetting.profile.result import ProfileResult
from forgetting.profile.train import DEFAULT_TRAIN, Observe, train_profiled
from forgetting.training import TrainConfig, TrainFn, evaluate_accuracy

__all__ = ["profile", "resolve_data"]

logger = logging.getLogger(__name__)


def resolve_data(
    data: Dataset | DataSource | str,
    test: DataSource | None = None,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[DataSource, DataSource | None, int, tuple[str, ...]]:
    """``(train, test, K, class names)`` of the inputs :func:`profile` takes.

    ``data`` is a registered dataset name (loaded with ``seed``), a :class:`~forgetting.data.Dataset` (its
    ``train`` and ``test`` splits and classes), or any labelled
    :class:`~forgetting.data.source.DataSource` (in-memory arrays or a user's ``torch`` Dataset through
    :class:`~forgetting.data.source.DatasetSource`), with ``num_classes`` (default: the largest label + 1).
    """
    if isinstance(data, str):
        from forgetting.data import load_dataset

        data = load_dataset(data, seed=seed)
    if isinstance(data, Dataset):
        if data.task != "classification":
            raise ConfigError(f"profile explains classifiers; dataset {data.name!r} is {data.task}")
        names = tuple(class_names) if class_names is not None else tuple(data.classes)
        return data.train, test if test is not None else data.test, num_classes or data.num_classes, names
    if not isinstance(data, DataSource):
        raise ConfigError(
            "profile data must be a dataset name, a forgetting Dataset or a DataSource, got "
            f"{type(data).__name__}"
        )
    if not data.has_targets:
        raise ConfigError("profile needs labelled training data; the source has no targets")
    if num_classes is None:
        labels = data.read_targets()
        if labels.ndim != 1:
            raise ConfigError(
                f"profile explains classifiers: targets must be [N] labels, got {tuple(labels.shape)}"
            )
        num_classes = int(labels.max()) + 1 if labels.numel() else 1
    names = tuple(class_names) if class_names is not None else tuple(str(k) for k in range(num_classes))
    if len(names) != num_classes:
        raise ConfigError(f"class_names has {len(names)} names for {num_classes} classes")
    return data, test, int(num_classes), names


def profile(
    data: Dataset | DataSource | str,
    *,
    test: DataSource | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    model: ModelRef = "small-cnn",
    model_options: Mapping[str, Any] | None = None,
    train: TrainConfig | None = None,
    train_fn: TrainFn | str | None = None,
    observe: Observe = "presentation",
    mislabel: MislabelSettings | None = None,
    prune: float | Sequence[float] = (),
    seed: int = 0,
    device: torch.device | str | None = "auto",
    out_dir: str | os.PathLike[str] | None = None,
    history: bool = False,
    thumbnails: int = 24,
    label_flipped: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProfileResult:
    """Train a classifier on ``data`` and explain it sample by sample (see the module docstring).

    Args:
        data: a dataset name, a :class:`~forgetting.data.Dataset`, or a labelled
            :class:`~forgetting.data.source.DataSource` (your own ``torch`` Dataset through
            :class:`~forgetting.data.source.DatasetSource`).
        test: the test set (default: the dataset's ``test`` split); needed for ``prune``.
        num_classes, class_names: for a bare DataSource (default: largest label + 1, ``"0"..``).
        model, model_options: a zoo name (``"small-cnn"``), a registered name, an import path
            ``"pkg.mod:fn"`` or a factory callable.
        train: the built-in trainer's settings (default ``TrainConfig(epochs=10)``: a fixed epoch count, so
            the dynamics of every sample cover the same epochs).
        train_fn: your own training function (see :func:`train_profiled`).
        observe: ``"presentation"`` (default, Toneva et al.) or ``"eval"``.
        mislabel: the AUM threshold-sample settings (default :class:`MislabelSettings`; ``runs=0``: off).
        prune: fraction(s) in ``(0, 1)`` for the pruning experiment.
        seed: every random choice (initialisation, batch order, threshold samples, pruning draws).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``...
        out_dir: write the table, ``summary.json`` and ``report/index.html`` there.
        history: also write cartography-style per-epoch JSONL (``out_dir/dynamics/``).
        thumbnails: examples per gallery in the report.
        label_flipped: bool ``[N]``, the rows whose labels you flipped on purpose (see
            :func:`~forgetting.profile.noise.flip_labels`): reported against the flags.
        progress: called with a short message at each phase (the CLI prints them).
    """
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    fractions = [float(prune)] if isinstance(prune, int | float) else [float(f) for f in prune]
    for f in fractions:
        if not 0.0 < f < 1.0:
            raise ConfigError(f"prune fraction must be in (0, 1), got {f}")
    train_source, test_source, k, names = resolve_data(
        data, test, num_classes=num_classes, class_names=class_names, seed=seed
    )
    if fractions and test_source is None:
        raise ConfigError("prune needs a test set to compare the retrained models on; pass test=...")
    labels = train_source.read_targets().numpy().astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ConfigError(f"training labels must be in 0..{k - 1}, found {labels.min()}..{labels.max()}")
    config = train or DEFAULT_TRAIN
    kwargs: dict[str, Any] = {
        "model": model,
        "model_options": model_options,
        "train": config,
        "train_fn": train_fn,
        "device": device,
    }
    history_dir = Path(out_dir) / "dynamics" if (history and out_dir is not None) else None
    say(f"training on {len(train_source):,} samples ({observe} observation)")
    main = train_profiled(train_source, k, observe=observe, seed=seed, history_dir=history_dir, **kwargs)
    seconds = {"train": time.perf_counter() - t0}
    test_accuracy = None
    if test_source is not None:
        test_accuracy = evaluate_accuracy(main.model, test_source)
    flags = None
    settings = mislabel or MislabelSettings()
    if settings.runs:
        say(f"fitting the AUM threshold: {settings.runs} run(s) with threshold samples")
        t = time.perf_counter()
        flags = flag_mislabeled(train_source, labels, k, settings, seed=seed, **kwargs)
        seconds["mislabel"] = time.perf_counter() - t
    result = ProfileResult(
        dynamics=main.dynamics,
        labels=labels,
        class_names=names,
        observe=observe,
        train=main.train,
        test_accuracy=test_accuracy,
        mislabel=flags,
        model=main.model,
        label_flipped=None if label_flipped is None else np.asarray(label_flipped, dtype=bool),
    )
    if result.label_flipped is not None and result.label_flipped.shape != labels.shape:
        raise ConfigError(f"label_flipped has shape {result.label_flipped.shape}, expected {labels.shape}")
    if fractions:
        assert test_source is not None
        t = time.perf_counter()
        for f in fractions:
            say(f"pruning {f:.0%}: retraining without the unforgettable samples, and without random ones")
            result.pruning.append(
                run_prune(
                    main.dynamics,
                    train_source,
                    test_source,
                    k,
                    f,
                    seed=seed,
                    full_accuracy=test_accuracy,
                    **kwargs,
                )
            )
        seconds["prune"] = time.perf_counter() - t
    if out_dir is not None:
        t = time.perf_counter()
        say(f"writing the table and the report into {out_dir}")
        result.files = write_outputs(result, train_source, Path(out_dir), thumbnails=thumbnails)
        seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    result.seconds = seconds
    logger.info(
        "profile: %d samples, %d epochs, training accuracy %.3f, test accuracy %s",
        result.n,
        result.train.epochs,
        result.train.train_accuracy,
        "n/a" if test_accuracy is None else f"{test_accuracy:.3f}",
    )
    return result
