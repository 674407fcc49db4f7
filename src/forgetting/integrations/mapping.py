"""A source of keyword inputs: dataset items that are dicts (``input_ids``, ``attention_mask``,
``pixel_values``... and a label), as Hugging Face models take them.

Its batches are ``(inputs, labels)``: ``inputs`` a dict of tensors on the device without the label keys,
ready for ``model(**inputs)``; ``labels`` int64 ``[B]`` or ``None``. An
:class:`~forgetting.observe.ObservationCallback` reads it with a ``forward`` that calls the model that way,
e.g. ``forward=lambda model, batch: model(**batch).logits``. Needs no framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate
from torch.utils.data import Dataset as TorchDataset

from forgetting.data.source import DataSource, Rows, as_rows
from forgetting.exceptions import ConfigError

__all__ = ["LABEL_KEYS", "MappingSource"]

#: Item keys read as the label (the first present) and never passed to the model.
LABEL_KEYS: tuple[str, ...] = ("labels", "label", "label_ids")
"""The keys an item's label is read from, in this order; they are never passed to the model."""

Collate = Callable[[list[Any]], Mapping[str, Any]]


class MappingSource(DataSource):
    """Rows of a dataset of dict items, collated into dict batches.

    Args:
        dataset: a map-style dataset (a ``datasets.Dataset``, a list of dicts, a torch ``Dataset``) whose
            items are dicts of model inputs and, optionally, a label under one of ``label_keys``.
        collate_fn: turns a list of items into a dict of tensors (``transformers.default_data_collator``,
            a ``DataCollatorWithPadding``...); default ``torch.utils.data.default_collate`` (items of
            tensors of one shape).
        label_keys: the keys that hold the label; they are removed from the model's inputs.
        has_targets: whether the items carry labels.
        num_workers: DataLoader workers of a pass.
        rows: restrict to these rows of ``dataset``.

    Passes read the rows in order through a ``DataLoader`` that draws nothing from torch's global random
    generator, so observing does not change the training run's random stream.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        collate_fn: Collate | None = None,
        label_keys: Sequence[str] = LABEL_KEYS,
        has_targets: bool = True,
        num_workers: int = 0,
        rows: Rows | None = None,
    ) -> None:
        try:
            size = len(dataset)
        except TypeError as err:
            raise ConfigError(
                f"a MappingSource needs a map-style dataset with __len__; got {type(dataset).__name__}"
            ) from err
        self.dataset = dataset
        self.collate_fn: Collate = collate_fn or default_collate
        self.label_keys = tuple(label_keys)
        self.num_workers = int(num_workers)
        self._has_targets = bool(has_targets)
        self._rows = np.arange(size, dtype=np.int64) if rows is None else as_rows(rows)

    def __len__(self) -> int:
        return int(self._rows.size)

    def __repr__(self) -> str:
        return f"MappingSource({type(self.dataset).__name__}, rows={len(self)})"

    @property
    def has_targets(self) -> bool:
        return self._has_targets

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise ConfigError("a MappingSource holds keyword inputs, not images; it has no input shape")

    @property
    def eval_input_shape(self) -> None:
        """``None``: keyword inputs have no image shape to size eval batches by."""
        return None

    def subset(self, rows: Rows) -> MappingSource:
        out = MappingSource.__new__(MappingSource)
        out.__dict__.update(self.__dict__)
        out._rows = self._rows[as_rows(rows)]
        return out

    def _label(self, batch: dict[str, Any]) -> torch.Tensor | None:
        label = None
        for key in self.label_keys:
            if key in batch:
                value = batch.pop(key)
                if label is None:
                    label = torch.as_tensor(value).to(torch.int64)
        return label

    def batches(
        self,
        device: torch.device,
        batch_size: int,
        *,
        rows: Rows | None = None,
        targets: bool = True,
    ) -> Iterator[tuple[Any, torch.Tensor | None]]:
        base = self._rows if rows is None else self._rows[as_rows(rows)]
        want = targets and self._has_targets
        loader = DataLoader(
            _Rows(self.dataset, base),
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            generator=torch.Generator(),  # a private generator: the global RNG stays untouched
        )
        for batch in loader:
            batch = dict(batch)
            label = self._label(batch)
            if want and label is None:
                raise ConfigError(
                    f"the items carry no label under {', '.join(self.label_keys)}; observe without targets "
                    "or add the label to the items"
                )
            inputs = {
                k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()
            }
            yield inputs, (label.to(device, non_blocking=True) if want and label is not None else None)

    def read_targets(self, rows: Rows | None = None) -> torch.Tensor:
        if not self._has_targets:
            raise ConfigError("this source was declared without targets (has_targets=False)")
        base = self._rows if rows is None else self._rows[as_rows(rows)]
        labels = []
        for row in base.tolist():
            item = self.dataset[int(row)]
            key = next((k for k in self.label_keys if k in item), None)
            if key is None:
                raise ConfigError(f"item {row} has no label under {', '.join(self.label_keys)}")
            labels.append(int(item[key]))
        return torch.tensor(labels, dtype=torch.int64)

    def torch_dataset(self, *, train: bool = True) -> TorchDataset:
        return _Rows(self.dataset, self._rows)


class _Rows(TorchDataset):
    """Item ``k`` is row ``rows[k]`` of ``dataset``."""

    def __init__(self, dataset: Any, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.rows = rows

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, k: int) -> Any:
        return self.dataset[int(self.rows[k])]
