"""The tiny experiment grid the tests of runs share, and what they read back from a run directory.

Every such test starts from ``examples/tiny.toml`` and names only what it changes: ``tiny_toml(seeds=[0],
train={"lr": 3e-3})`` merges tables key by key, and ``None`` deletes a key (``train={"epochs": None}``).
The fixtures of ``conftest.py`` expose the same helpers.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from forgetting.experiments import ResultStore

TINY_FILE = Path(__file__).resolve().parents[1] / "examples" / "tiny.toml"


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny(**changes: Any) -> dict[str, Any]:
    """``examples/tiny.toml`` with ``changes`` (see the module docstring), as a mapping."""
    return _merge(tomllib.loads(TINY_FILE.read_text(encoding="utf-8")), changes)


def tiny_toml(**changes: Any) -> str:
    """The same, as TOML text (for the CLI and config files)."""
    return tomli_w.dumps(tiny(**changes))


def stored_queries(run_dir: Path) -> dict[str, list[list[int]]]:
    """Per experiment id of a run directory: the queried pool indices of each stored round."""
    with ResultStore(run_dir) as store:
        return store.queries()
