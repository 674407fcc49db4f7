"""Building blocks shared by the static HTML reports (experiments and forgetting maps).

Lives below both report modules so that the segmentation layer does not import the experiments layer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CSS", "new_figure", "slug", "table", "td"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 0.6em; font-size: 0.8em; overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
.failed { color: #a00; }
"""


def new_figure(width: float, height: float, *, constrained: bool = True) -> Any:
    """A matplotlib ``Figure`` (no pyplot: no global state, no GUI backend), ``width`` x ``height`` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained" if constrained else None)


def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in parts if p)).strip("_") or "x"


def table(headers: Sequence[str], rows: Iterable[str], cls: str) -> str:
    """An HTML table with escaped ``headers`` and pre-rendered ``rows`` (each the cells of one ``<tr>``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(f"<tr>{r}</tr>" for r in rows)
    return f'<table class="{cls}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def td(text: object) -> str:
    """One escaped text cell."""
    return f"<td>{html.escape(str(text))}</td>"
