"""Fixtures shared by the test modules: the tiny experiment grid and what a run directory holds
(see ``tests/tiny_run.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tiny_run import stored_queries, tiny, tiny_toml


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., dict[str, Any]]:
    """``tiny_config(**changes)``: the tiny grid as a mapping, for ``parse_config``."""
    return tiny


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_config_file(filename="cfg.toml", **changes)``: the tiny grid written as a TOML file in
    ``tmp_path``, for the CLI."""

    def write(filename: str = "cfg.toml", **changes: Any) -> Path:
        path = tmp_path / filename
        path.write_text(tiny_toml(**changes), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def queries_of() -> Callable[[Path], dict[str, list[list[int]]]]:
    """``queries_of(run_dir)``: per experiment id, the queried indices of each stored round."""
    return stored_queries
