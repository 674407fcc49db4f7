"""Per-sample tables of an :class:`~forgetting.events.EventTracker`, for other tools: CSV, Parquet, pandas.

A table is a dict of equal-length host columns (numpy arrays), one row per sample, in row order. The columns
of a per-sample tracker (:data:`SAMPLE_COLUMNS`):

- ``sample_id``: the caller's id of the row (ints or strings; default the row index, int64);
- ``observations``, ``switches``, ``forgetting``, ``learning``: int32 counts (observation passes that
  covered the sample; prediction changes; correct -> incorrect and incorrect -> correct transitions);
- ``never_learned``, ``ever_correct``, ``correct`` (at the latest labelled observation) and
  ``observed_with_targets``: bool. Without targets (an unlabelled pool) ``observed_with_targets`` is
  ``False`` and the label columns are moot (0 and ``False``);
- ``last_forgotten_epoch``, ``learned_epoch``: int64 epochs, -1 where undefined (only with epoch tracking);
- ``prediction``: int64, the latest stored prediction.

A pixel tracker (shape ``(N, H, W)``) has no single row per sample, so :func:`sample_table` asks which
table is meant: ``per="pixel"`` gives one row per pixel, with ``sample_id``, ``y`` and ``x`` columns (the
per-pixel columns above; for more than two pixel dimensions ``dim1``, ``dim2``...), and ``per="sample"`` a
per-sample summary: ``pixels`` (pixels per sample), ``observed_pixels``, ``observations`` (the most passes
any pixel saw), ``switches_sum`` / ``switches_mean`` (over observed pixels; NaN if none) / ``switches_max``,
``forgetting_sum`` / ``forgetting_mean`` / ``forgetting_max``, ``learning_sum``, ``never_learned_pixels``,
``ever_correct_pixels``, ``observed_with_targets_pixels`` and ``last_forgotten_epoch`` (the latest over the
sample's pixels). Without ``per`` a pixel tracker is refused with a message naming both.

:func:`write_csv` needs only the standard library (text cells that a spreadsheet would run as a formula,
those starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, get a leading ``'``);
:func:`write_parquet` needs ``pyarrow`` (``pip install 'forgetting[parquet]'``) and :func:`to_frame`
``pandas`` (``pip install 'forgetting[pandas]'``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from forgetting._io import atomic_file, atomic_write_text
from forgetting.exceptions import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import pandas

    from forgetting.events import EventTracker

__all__ = ["SAMPLE_COLUMNS", "Table", "sample_table", "to_frame", "write_csv", "write_parquet"]

#: A per-sample table: column name -> host array, every column of the same length.
Table = dict[str, np.ndarray]

#: The columns of a per-sample tracker's table, in order (the epoch columns only with epoch tracking).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "observations",
    "switches",
    "forgetting",
    "learning",
    "never_learned",
    "ever_correct",
    "correct",
    "observed_with_targets",
    "last_forgotten_epoch",
    "learned_epoch",
    "prediction",
)

_ELEMENT_READOUTS = SAMPLE_COLUMNS[1:]
_EPOCH_READOUTS = ("last_forgotten_epoch", "learned_epoch")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Pixels read at a time by the per-sample summary of a pixel tracker.
_SUMMARY_CHUNK = 1 << 22


def _ids_column(ids: Sequence[Any] | np.ndarray | torch.Tensor | None, n: int) -> np.ndarray:
    """``sample_id``: the caller's ids (int, str...) or ``arange(n)``."""
    if ids is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    out = np.asarray(ids)
    if out.ndim != 1 or out.shape[0] != n:
        raise ConfigError(f"ids must give one id per row of the tracker ({n}), got shape {out.shape}")
    if out.dtype == object:
        out = out.astype(str)
    return out


def _readouts(tracker: EventTracker) -> tuple[str, ...]:
    return tuple(r for r in _ELEMENT_READOUTS if tracker.track_epochs or r not in _EPOCH_READOUTS)


def sample_table(
    tracker: EventTracker,
    ids: Sequence[Any] | np.ndarray | torch.Tensor | None = None,
    *,
    per: Literal["sample", "pixel"] | None = None,
) -> Table:
    """The tracker's table (see the module docstring for the columns).

    Args:
        tracker: a per-sample ``(N,)`` or per-pixel ``(N, *dims)`` tracker, on any device.
        ids: ``[N]`` ids of the rows (ints or strings: file names, dataset guids); default ``0..N-1``.
        per: ``None`` or ``"sample"`` for a per-sample tracker; for a pixel tracker ``"pixel"`` (one row per
            pixel) or ``"sample"`` (a per-sample summary of its pixels).

    Returns:
        Column name -> host array, in the order of :data:`SAMPLE_COLUMNS` (summary columns for a summary).

    Raises:
        ConfigError: a pixel tracker without ``per``, ``per="pixel"`` for a per-sample tracker, or ids of
            the wrong length.
    """
    if per not in (None, "sample", "pixel"):
        raise ConfigError(f"per must be None, 'sample' or 'pixel', got {per!r}")
    id_col = _ids_column(ids, tracker.n)
    pixel = len(tracker.shape) > 1
    if not pixel:
        if per == "pixel":
            raise ConfigError(f"per='pixel' needs a pixel tracker; this one has shape {tracker.shape}")
        cols: Table = {"sample_id": id_col}
        cols.update({name: tracker.read(name).cpu().numpy() for name in _readouts(tracker)})
        return cols
    if per is None:
        raise ConfigError(
            f"this tracker counts pixels (shape {tracker.shape}: {tracker.numel} pixels in all); pass "
            "per='pixel' for one row per pixel with sample_id, y, x columns, or per='sample' for one row "
            "per sample that sums and averages its pixels"
        )
    if per == "pixel":
        return _pixel_rows(tracker, id_col)
    return _pixel_summary(tracker, id_col)


def _pixel_rows(tracker: EventTracker, id_col: np.ndarray) -> Table:
    """One row per pixel: ``sample_id``, ``y``, ``x`` (or ``dim1..``) and the per-element columns."""
    dims = tracker.shape[1:]
    grid = np.indices(tracker.shape, dtype=np.int32).reshape(len(tracker.shape), -1)
    names = ["y", "x"] if len(dims) == 2 else [f"dim{i + 1}" for i in range(len(dims))]
    cols: Table = {"sample_id": id_col[grid[0]]}
    cols.update({name: grid[i + 1] for i, name in enumerate(names)})
    cols.update({name: tracker.read(name).reshape(-1).cpu().numpy() for name in _readouts(tracker)})
    return cols


def _pixel_summary(tracker: EventTracker, id_col: np.ndarray) -> Table:
    """One row per sample, summarising its pixels. Computed on the tracker's device in chunks of rows (at
    most :data:`_SUMMARY_CHUNK` pixels read at a time, so a large pool needs no full-size temporaries); one
    host copy per column at the end."""
    n = tracker.n
    per_row = int(np.prod(tracker.shape[1:], dtype=np.int64))
    step = max(1, _SUMMARY_CHUNK // max(per_row, 1))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, max(n, 1), step):
        rows = torch.arange(start, min(start + step, n), device=tracker.device)
        for name, value in _summarise_rows(tracker, rows).items():
            parts.setdefault(name, []).append(value)
    cols: Table = {"sample_id": id_col}
    cols["pixels"] = np.full(n, per_row, dtype=np.int64)
    cols.update({name: torch.cat(chunks).cpu().numpy() for name, chunks in parts.items()})
    return cols


def _summarise_rows(tracker: EventTracker, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The summary columns (except ``pixels``) of ``rows``, on the tracker's device."""

    def flat(name: str) -> torch.Tensor:
        return tracker.read(name, rows).reshape(rows.shape[0], -1)

    seen = flat("seen")
    observed = seen.sum(1)
    denominator = observed.clamp(min=1).to(torch.float64)
    switches, forgetting = flat("switches"), flat("forgetting")
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=seen.device)
    out = {
        "observed_pixels": observed,
        "observations": flat("observations").amax(1),
        "switches_sum": switches.sum(1),
        "switches_mean": torch.where(observed > 0, switches.sum(1) / denominator, nan),
        "switches_max": switches.amax(1),
        "forgetting_sum": forgetting.sum(1),
        "forgetting_mean": torch.where(observed > 0, forgetting.sum(1) / denominator, nan),
        "forgetting_max": forgetting.amax(1),
        "learning_sum": flat("learning").sum(1),
        "never_learned_pixels": flat("never_learned").sum(1),
        "ever_correct_pixels": flat("ever_correct").sum(1),
        "observed_with_targets_pixels": flat("observed_with_targets").sum(1),
    }
    if tracker.track_epochs:
        out["last_forgotten_epoch"] = flat("last_forgotten_epoch").amax(1)
    return out


def _check_table(table: Mapping[str, np.ndarray]) -> int:
    lengths = {name: len(col) for name, col in table.items()}
    if not lengths:
        raise ConfigError("the table has no columns")
    if len(set(lengths.values())) != 1:
        raise ConfigError(f"the table's columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def _safe_text(cell: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading ``'`` before ``=``, ``+``, ``-``, ``@``..."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_cells(col: np.ndarray) -> list[Any]:
    if col.dtype == np.bool_:
        return ["true" if v else "false" for v in col.tolist()]
    if col.dtype.kind in "iuf":
        return col.tolist()  # numbers are never quoted; NaN is written as nan
    return [_safe_text(str(v)) for v in col.tolist()]


def write_csv(table: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as CSV at ``path`` (atomically; header row; booleans ``true``/``false``).

    Text cells that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are written with a
    leading ``'`` so that a spreadsheet does not evaluate them; numbers are written as they are.
    """
    n = _check_table(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(table))
    columns = [_csv_cells(np.asarray(col)) for col in table.values()]
    for i in range(n):
        writer.writerow([col[i] for col in columns])
    return atomic_write_text(path, buffer.getvalue())


def write_parquet(table: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as a Parquet file at ``path`` (needs ``pyarrow``; columns keep their dtypes)."""
    _check_table(table)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "Parquet export needs pyarrow: pip install 'forgetting[parquet]' (or use to_csv)"
        ) from exc
    path = Path(path)
    with atomic_file(path) as fh:
        pq.write_table(pa.table({name: np.asarray(col) for name, col in table.items()}), fh)
    return path


def to_frame(table: Mapping[str, np.ndarray]) -> pandas.DataFrame:
    """``table`` as a ``pandas.DataFrame`` (needs pandas), one row per sample, columns in order."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError(
            "to_frame needs pandas: pip install 'forgetting[pandas]' (or use to_csv)"
        ) from exc
    _check_table(table)
    return pd.DataFrame({name: np.asarray(col) for name, col in table.items()})
