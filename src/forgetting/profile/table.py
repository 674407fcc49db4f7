"""Writing the per-sample table: CSV always, parquet when ``pyarrow`` is installed.

CSV cells that a spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-`` or ``@``, after
leading whitespace) get a leading ``'``: a class name such as ``=HYPERLINK(...)`` from a user's label file
must not execute when the table is opened in Excel or LibreOffice. Numbers are written as numbers (a
negative AUM stays ``-1.25``); only text cells are neutralised.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from forgetting._io import atomic_write_text
from forgetting.exceptions import ConfigError

__all__ = ["csv_cell", "has_parquet", "write_csv", "write_parquet", "write_table"]

logger = logging.getLogger(__name__)

_FORMULA_START = ("=", "+", "-", "@")


def has_parquet() -> bool:
    """Whether ``pyarrow`` is importable (parquet output)."""
    return importlib.util.find_spec("pyarrow") is not None


def csv_cell(value: object) -> str:
    """One CSV cell: numbers in full precision (NaN as empty), booleans as ``true``/``false``, text with a
    leading ``'`` when it would start a formula."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        x = float(value)
        return "" if math.isnan(x) else repr(x)
    text = str(value)
    if text.lstrip().startswith(_FORMULA_START):
        return "'" + text
    return text


def _check(columns: Mapping[str, np.ndarray]) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"table columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def write_csv(columns: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write the columns (equal-length arrays) as a CSV with a header row, atomically."""
    n = _check(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in columns])
    lists = [np.asarray(col).tolist() for col in columns.values()]
    for i in range(n):
        writer.writerow([csv_cell(col[i]) for col in lists])
    return atomic_write_text(path, buf.getvalue())


def write_parquet(columns: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write the columns as a parquet file (needs ``pyarrow``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check(columns)
    table = pa.table({name: np.asarray(col) for name, col in columns.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_table(
    columns: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str], stem: str = "samples"
) -> list[Path]:
    """``<out_dir>/<stem>.csv``, plus ``<stem>.parquet`` when pyarrow is installed. Returns the paths."""
    out = Path(out_dir)
    paths = [write_csv(columns, out / f"{stem}.csv")]
    if has_parquet():
        paths.append(write_parquet(columns, out / f"{stem}.parquet"))
    else:
        logger.debug("pyarrow is not installed: no parquet table (pip install pyarrow)")
    return paths
