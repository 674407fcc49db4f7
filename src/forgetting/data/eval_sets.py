"""Evaluation sets by name: the clean test set, corrupted copies of it, and real domain shifts.

Names:

* ``"test"``: the test split itself;
* ``"<corruption>-<severity>"``, e.g. ``"gaussian_noise-3"``: :func:`corrupt` applied to the test split;
* a dataset name, e.g. ``"digits"`` or ``"stl10"``: that dataset's every sample (``split("all")``),
  converted to the test split's channels and size;
* ``"cifar10-c/<corruption>-<severity>"``, e.g. ``"cifar10-c/fog-3"``: the real CIFAR-10-C images
  (needs ``root``);
* ``"split:<name>"``, e.g. ``"split:shifted"``: another split of the experiment's own dataset (the shifted
  test volume of ``seismic-synthetic`` with ``test_geology = "both"``); resolved by the caller, which holds
  the dataset (:func:`build_eval_set` takes it as ``dataset``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from forgetting.data.corruptions import CORRUPTIONS, check_corruption, corrupt
from forgetting.data.dataset import Dataset, Split
from forgetting.data.formats import convert_channels, resize_images
from forgetting.data.registry import DATASETS, list_datasets, load_dataset
from forgetting.data.user_formats import CIFAR10C_CORRUPTIONS
from forgetting.exceptions import ConfigError, UnknownNameError

EvalSetKind = Literal["test", "corruption", "dataset", "split"]
SPLIT_PREFIX = "split:"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CORRUPTION_NAME = re.compile(r"^(?P<corruption>[a-z_]+)-(?P<severity>-?\d+)$")


@dataclass(frozen=True)
class EvalSetName:
    """A parsed evaluation-set name.

    Attributes:
        name: the name as given.
        kind: ``"test"``, ``"corruption"`` (synthetic, from :func:`corrupt`), ``"dataset"`` or ``"split"``.
        corruption: the corruption (``"corruption"`` kind, and ``cifar10-c/...``).
        severity: 1..5 when ``corruption`` is set.
        dataset: the dataset to load (``"dataset"`` kind).
        options: options for :func:`load_dataset` (``"dataset"`` kind).
    """

    name: str
    kind: EvalSetKind
    corruption: str | None = None
    severity: int | None = None
    dataset: str | None = None
    options: dict[str, object] = field(default_factory=dict)


def _unknown(name: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown evaluation set {name!r}; use 'test', '<corruption>-<severity 1..5>' with a corruption "
        f"from {', '.join(CORRUPTIONS)}, a dataset from {', '.join(list_datasets())}, "
        "'cifar10-c/<corruption>-<severity>', or 'split:<name>' for another split of the dataset"
    )


def parse_eval_set_name(name: str) -> EvalSetName:
    """Parse an evaluation-set name (see the module docstring).

    Raises:
        UnknownNameError: a name of none of the accepted forms (listing corruptions and datasets).
        ConfigError: a known corruption with a severity outside 1..5.
    """
    if name == "test":
        return EvalSetName(name, "test")
    if name.startswith(SPLIT_PREFIX):
        split = name[len(SPLIT_PREFIX) :]
        if not _SPLIT_NAME.match(split):
            raise UnknownNameError(
                f"evaluation set {name!r}: write 'split:<name>' with the name of a split of the dataset, "
                "e.g. 'split:shifted'"
            )
        return EvalSetName(name, "split", dataset=split)
    match = _CORRUPTION_NAME.match(name)
    if match and match["corruption"] in CORRUPTIONS:
        severity = int(match["severity"])
        check_corruption(match["corruption"], severity)
        return EvalSetName(name, "corruption", corruption=match["corruption"], severity=severity)
    if name in DATASETS:
        return EvalSetName(name, "dataset", dataset=name)
    prefix = "cifar10-c/"
    if name.startswith(prefix):
        inner = _CORRUPTION_NAME.match(name[len(prefix) :])
        if inner is None or inner["corruption"] not in CIFAR10C_CORRUPTIONS:
            raise UnknownNameError(
                f"unknown evaluation set {name!r}; CIFAR-10-C sets are 'cifar10-c/<corruption>-<1..5>' "
                "with a "
                f"corruption from {', '.join(CIFAR10C_CORRUPTIONS)}"
            )
        severity = int(inner["severity"])
        if severity not in range(1, 6):
            raise ConfigError(f"evaluation set {name!r}: severity must be 1..5, got {severity}")
        return EvalSetName(
            name,
            "dataset",
            corruption=inner["corruption"],
            severity=severity,
            dataset="cifar10-c",
            options={"corruption": inner["corruption"], "severity": severity},
        )
    raise _unknown(name)


def build_eval_set(
    name: str,
    test: Split,
    *,
    seed: int,
    root: str | Path | None = None,
    classes: Sequence[str] | None = None,
    dataset: Dataset | None = None,
) -> Split:
    """The evaluation set called ``name`` for a model trained on data shaped like ``test``.

    Args:
        name: see :func:`parse_eval_set_name`.
        test: the in-distribution test split (``uint8 [N, C, H, W]`` images).
        seed: seeds the corruption noise (and any split a loaded dataset makes).
        root: data path for a dataset that needs one (``stl10``, ``cifar10-c/...``).
        classes: the model's class names; when given, a dataset eval set must have the same ones.
        dataset: the experiment's dataset, whose splits ``split:<name>`` refers to.

    Returns:
        A :class:`Split` with ``test``'s channel count and image size.

    Raises:
        UnknownNameError, ConfigError: see :func:`parse_eval_set_name`; also a dataset whose classes differ
            from ``classes`` or whose task differs from ``test``'s.
    """
    parsed = parse_eval_set_name(name)
    if parsed.kind == "test":
        return test
    if parsed.kind == "split":
        split = str(parsed.dataset)
        if dataset is None:
            raise ConfigError(f"evaluation set {name!r} refers to a split of the dataset; pass `dataset`")
        if split not in dataset.splits:
            raise ConfigError(
                f"evaluation set {name!r}: dataset {dataset.name!r} has no split {split!r}; its splits are "
                f"{', '.join(sorted(dataset.splits))}"
                + (
                    " (seismic-synthetic makes a 'shifted' split with data.options.test_geology = 'both')"
                    if dataset.name == "seismic-synthetic"
                    else ""
                )
            )
        return dataset.splits[split]
    if parsed.kind == "corruption" and parsed.corruption is not None and parsed.severity is not None:
        return Split(corrupt(test.images, parsed.corruption, parsed.severity, seed=seed), test.targets)
    other = load_dataset(str(parsed.dataset), root=root, seed=seed, **parsed.options)
    if classes is not None and tuple(classes) != other.classes:
        raise ConfigError(
            f"evaluation set {name!r} has classes {other.classes}, but the model's are {tuple(classes)}; "
            "a domain-shift set must use the same class ids"
        )
    if (other.task == "segmentation") != (test.targets.ndim == 3):
        raise ConfigError(f"evaluation set {name!r} is a {other.task} dataset; the test split is not")
    whole = other.split("all")
    size = (int(test.images.shape[2]), int(test.images.shape[3]))
    images = resize_images(convert_channels(whole.images, int(test.images.shape[1])), size)
    targets = whole.targets
    if targets.ndim == 3 and tuple(targets.shape[-2:]) != size:
        raise ConfigError(
            f"evaluation set {name!r}: masks are {tuple(targets.shape[-2:])}, test masks {size}"
        )
    return Split(images, targets)
