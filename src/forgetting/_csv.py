"""CSV cells that a spreadsheet cannot run: the OWASP rule against CSV (formula) injection.

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or a carriage
return) as a formula, so a file or class name such as ``=HYPERLINK(...)`` would run when the CSV is opened.
Every CSV the project writes passes its text cells through :func:`safe_cell`, which puts a single quote
``'`` in front of such a cell. Plain numbers (``-0.25``, ``+1e-3``) are left as they are: a spreadsheet reads
them as numbers, not formulas, and the project's own columns stay numeric.

Reading a CSV back (``forgetting label``), :func:`unquoted` undoes the prefix, so that a ``query.csv``
written by the project, or saved again by a spreadsheet, still names the same items and classes.

:func:`csv_text` writes rows with both rules applied (and quotes every cell of a row that holds a carriage
return, which the csv module leaves unquoted with ``"\n"`` line endings, so the row reads back whole).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

__all__ = ["FORMULA_PREFIXES", "csv_text", "safe_cell", "unquoted"]

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` with a ``'`` in front when it is text a spreadsheet would run as a formula.

    Non-strings (numbers written by the csv module) and strings that are plain numbers are returned as they
    are.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """CSV text (``"\n"`` line endings) of ``rows``, every cell passed through :func:`safe_cell`."""
    buffer = io.StringIO()
    plain = csv.writer(buffer, lineterminator="\n")
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        cells = [safe_cell(cell) for cell in row]
        has_cr = any(isinstance(cell, str) and "\r" in cell for cell in cells)
        (quoted if has_cr else plain).writerow(cells)
    return buffer.getvalue()


def unquoted(value: str) -> str | None:
    """The cell :func:`safe_cell` turned into ``value``, or ``None`` when ``value`` is not such a cell."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return None
