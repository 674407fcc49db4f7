"""Learning dynamics inside other training frameworks: PyTorch Lightning and the Hugging Face ``Trainer``.

::

    from forgetting.integrations.lightning import ForgettingCallback, lightning_train_fn
    from forgetting.integrations.transformers import ForgettingTrainerCallback

Neither ``import forgetting`` nor ``import forgetting.integrations`` imports a framework: each module
imports its own when it is imported (or when one of its names is read from this package), and raises
:class:`~forgetting.exceptions.MissingDependencyError` naming the extra to install
(``pip install 'forgetting[lightning]'``, ``pip install 'forgetting[transformers]'``) when it is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ForgettingCallback",
    "ForgettingTrainerCallback",
    "MappingSource",
    "ObserverCallback",
    "ObserverTrainerCallback",
    "lightning_train_fn",
    "pool_source",
]

_MODULES = {
    "ForgettingCallback": "lightning",
    "ObserverCallback": "lightning",
    "lightning_train_fn": "lightning",
    "pool_source": "lightning",
    "ForgettingTrainerCallback": "transformers",
    "ObserverTrainerCallback": "transformers",
    "MappingSource": "mapping",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'forgetting.integrations' has no attribute {name!r}")
    return getattr(importlib.import_module(f"forgetting.integrations.{module}"), name)
