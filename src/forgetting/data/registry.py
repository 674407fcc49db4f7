"""The dataset registry: names -> loaders, option checking, and the availability report.

A loader is a function ``loader(root: Path | None, seed: int, **options) -> Dataset``. Register one with
:func:`register_dataset` (as a decorator or a call) and it becomes loadable by name everywhere, including
configs and the ``forgetting datasets`` command.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from forgetting.data.dataset import Dataset
from forgetting.data.formats import DATA_ENV
from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError, UnknownNameError

logger = logging.getLogger(__name__)


class DatasetLoader(Protocol):
    """``loader(root, seed, **options) -> Dataset``."""

    def __call__(self, root: Path | None, seed: int, **options: Any) -> Dataset: ...


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: registry name.
        loader: the function that builds the :class:`Dataset`.
        description: one line for listings.
        needs_root: ``True`` for formats the user supplies (the data is not on this machine by default).
        options: the options the loader accepts, with their defaults.
        expected_files: what a user-supplied directory must contain (for messages and the report).
    """

    name: str
    loader: DatasetLoader
    description: str
    needs_root: bool = False
    options: Mapping[str, object] = field(default_factory=dict)
    expected_files: str = ""


DATASETS: dict[str, DatasetSpec] = {}
"""Every registered dataset, by name."""


def register_dataset(
    name: str,
    loader: DatasetLoader | None = None,
    *,
    description: str = "",
    needs_root: bool = False,
    options: Mapping[str, object] | None = None,
    expected_files: str = "",
    overwrite: bool = False,
) -> Any:
    """Register ``loader`` under ``name``; without ``loader``, return a decorator that registers its target.

    Raises:
        ConfigError: ``name`` is taken and ``overwrite`` is false.
    """

    def register(fn: DatasetLoader) -> DatasetLoader:
        if name in DATASETS and not overwrite:
            raise ConfigError(
                f"dataset name {name!r} is already registered; pass overwrite=True to replace it"
            )
        DATASETS[name] = DatasetSpec(
            name=name,
            loader=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            needs_root=needs_root,
            options=dict(options or {}),
            expected_files=expected_files,
        )
        return fn

    return register(loader) if loader is not None else register


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` for ``name``.

    Raises:
        UnknownNameError: listing the known names.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}"
        ) from None


def load_dataset(name: str, *, root: str | Path | None = None, seed: int = 0, **options: Any) -> Dataset:
    """Load a registered dataset.

    Args:
        name: a name from :func:`list_datasets`, e.g. ``"mnist-5k"``.
        root: a directory (or, for ``arrays``, a ``.npz`` file) holding user-supplied data. Datasets that
            ship inside installed packages ignore it.
        seed: seeds any split the dataset has to make itself (datasets without an official split).
        **options: dataset-specific options (see ``DATASETS[name].options`` for the names and defaults).

    Returns:
        A :class:`Dataset` whose images are ``uint8 [N, C, H, W]`` on the CPU.

    Raises:
        UnknownNameError: an unknown ``name``.
        ConfigError: an unknown option or a bad option value.
        DatasetNotFoundError: the files are not where the loader looked (the message lists every place).
        DatasetFormatError: the files are malformed (the message names the file and field).
    """
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in spec.options.items()) or "none"
        raise ConfigError(
            f"dataset {name!r} has no option(s) {', '.join(unknown)}; allowed options: {allowed}"
        )
    merged = {**spec.options, **options}
    root_path = Path(root).expanduser() if root is not None else None
    return spec.loader(root_path, int(seed), **merged)


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded here, for the ``forgetting datasets`` listing.

    Attributes:
        name: registry name.
        available: ``True`` when it loaded.
        source: where it was read from, or what it needs.
        sizes: samples per split (empty when unavailable).
        classes: class names (empty when unavailable).
        reason: why it is unavailable (``None`` when available).
        description: one line about the dataset.
    """

    name: str
    available: bool
    source: str
    sizes: dict[str, int] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    reason: str | None = None
    description: str = ""


def dataset_report(roots: Mapping[str, str | Path] | None = None) -> list[DatasetStatus]:
    """Try every registered dataset and report what is available.

    Args:
        roots: optional ``{name: root}`` for user-format datasets. A user-format dataset without a root
            is still found through ``$FORGETTING_DATA/<name>``; otherwise it is reported as needing a path,
            with the files it expects.

    Returns:
        One :class:`DatasetStatus` per registered dataset, sorted by name.
    """
    roots = dict(roots or {})
    env = os.environ.get(DATA_ENV)
    report: list[DatasetStatus] = []
    for name in list_datasets():
        spec = DATASETS[name]
        root = roots.get(name)
        if spec.needs_root and root is None and not (env and (Path(env) / name).exists()):
            report.append(
                DatasetStatus(
                    name=name,
                    available=False,
                    source="needs a path",
                    reason=(
                        f"needs a path: pass root=<dir> (or use ${DATA_ENV}/{name}) holding "
                        f"{spec.expected_files}"
                    ),
                    description=spec.description,
                )
            )
            continue
        try:
            dataset = load_dataset(name, root=root)
        except (DatasetNotFoundError, DatasetFormatError, ConfigError) as exc:
            logger.debug("dataset %s unavailable: %s", name, exc)
            report.append(
                DatasetStatus(
                    name=name,
                    available=False,
                    source="not found" if isinstance(exc, DatasetNotFoundError) else "unreadable",
                    reason=str(exc),
                    description=spec.description,
                )
            )
            continue
        report.append(
            DatasetStatus(
                name=name,
                available=True,
                source=dataset.source,
                sizes={split: len(s) for split, s in dataset.splits.items()},
                classes=dataset.classes,
                description=spec.description,
            )
        )
    return report
