"""Run one tutorial script cell by cell and write its documentation page (Markdown + PNG figures).

A tutorial is a plain Python script in the "percent" format (the format of Jupytext, VS Code and Spyder),
so ``python docs/tutorials/<name>.py`` runs it as it is:

- the module docstring is the page: its first line is the title, the rest an introduction in Markdown;
- ``# %%`` starts a code cell: shown on the page, then run, then followed by what it printed on stdout
  and by every matplotlib figure it left open (saved as PNG and closed);
- ``# %% [markdown]`` starts a text cell: its comment lines, without the leading ``# ``, are Markdown.

Every cell runs in one namespace (a module registered as ``__main__``, so classes defined in a tutorial
pickle as they would in a script), in the current working directory. A cell that raises stops the run:
the traceback goes to stderr and the exit status is 1, so the docs build fails.

Usage: ``python docs/run_tutorial.py docs/tutorials/<name>.py OUT_DIR`` writes ``OUT_DIR/<name>.md`` and
``OUT_DIR/<name>-<cell>-<k>.png``. The docs build (``docs/hooks.py``) runs it once per tutorial, in a
fresh temporary directory.
"""

from __future__ import annotations

import ast
import contextlib
import io
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

CELL = "# %%"
MARKDOWN = "# %% [markdown]"


class TutorialError(Exception):
    """A tutorial that is malformed (no title, a text cell with code in it) or that failed to run."""


@dataclass
class Cell:
    """One cell of a tutorial: ``kind`` is ``"markdown"`` or ``"code"``; ``line`` its first line (from 1)."""

    kind: str
    source: str
    line: int
    output: str = ""
    figures: list[str] = field(default_factory=list)


@dataclass
class Tutorial:
    """A parsed tutorial: the title, the introduction (Markdown) and the cells in order."""

    path: Path
    title: str
    intro: str
    cells: list[Cell]


def _uncomment(line: str) -> str:
    """``#`` and one space off a text cell's line; deeper indentation (nested lists, code) stays."""
    text = line.strip()[1:].rstrip()
    return text[1:] if text.startswith(" ") else text


def parse(path: Path) -> Tutorial:
    """Split a tutorial script into its title, introduction and cells.

    Raises:
        TutorialError: no module docstring, or a text cell with a line that is not a comment.
    """
    text = path.read_text(encoding="utf-8")
    module = ast.parse(text, filename=str(path))
    doc = ast.get_docstring(module, clean=True)
    if not doc or not module.body or not isinstance(module.body[0], ast.Expr):
        raise TutorialError(f"{path}: a tutorial starts with a docstring whose first line is its title")
    title, _, intro = doc.partition("\n")
    lines = text.splitlines()
    cells: list[Cell] = []
    kind, start, chunk = "code", module.body[0].end_lineno + 1, []  # code right after the docstring

    def flush() -> None:
        first = next((i for i, raw in enumerate(chunk) if raw.strip()), None)
        if first is None:
            return
        last = max(i for i, raw in enumerate(chunk) if raw.strip())
        body = chunk[first : last + 1]
        if kind == "markdown":
            for offset, raw in enumerate(body):
                stripped = raw.strip()
                if stripped and not stripped.startswith("#"):
                    raise TutorialError(
                        f"{path}:{start + first + offset}: a text cell ('# %% [markdown]') holds only "
                        "comment "
                        "lines"
                    )
            body = [_uncomment(raw) for raw in body]
        cells.append(Cell(kind, "\n".join(body), start + first))

    for number, raw in enumerate(lines[start - 1 :], start=start):
        if raw.startswith(CELL):
            flush()
            kind = "markdown" if raw.startswith(MARKDOWN) else "code"
            start, chunk = number + 1, []
        else:
            chunk.append(raw)
    flush()
    return Tutorial(path, title.strip().lstrip("#").strip(), intro.strip(), cells)


def _save_figures(out_dir: Path, stem: str, index: int) -> list[str]:
    if "matplotlib.pyplot" not in sys.modules:
        return []
    import matplotlib.pyplot as plt

    names = []
    for k, number in enumerate(plt.get_fignums(), start=1):
        figure = plt.figure(number)
        name = f"{stem}-{index}-{k}.png"
        figure.savefig(out_dir / name, dpi=96, bbox_inches="tight")
        plt.close(figure)
        names.append(name)
    return names


def execute(tutorial: Tutorial, out_dir: Path) -> float:
    """Run the code cells in order, filling each cell's ``output`` and ``figures``; return the seconds.

    Raises:
        TutorialError: a cell raised (the message names the cell's line; the traceback is printed to stderr).
    """
    module = types.ModuleType("__main__")
    module.__file__ = str(tutorial.path.resolve())
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    sys.path.insert(0, str(tutorial.path.resolve().parent))
    started = time.perf_counter()
    try:
        for index, cell in enumerate(tutorial.cells, start=1):
            if cell.kind != "code":
                continue
            # pad with newlines so that tracebacks give the script's own line numbers
            code = compile("\n" * (cell.line - 1) + cell.source, str(tutorial.path), "exec")
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    exec(code, module.__dict__)
            except BaseException as err:
                sys.stdout.write(buffer.getvalue())
                traceback.print_exc()
                raise TutorialError(f"{tutorial.path}: the cell at line {cell.line} raised {err!r}") from err
            cell.output = buffer.getvalue()
            sys.stdout.write(cell.output)  # also in the build log
            cell.figures = _save_figures(out_dir, tutorial.path.stem, index)
    finally:
        sys.path.remove(str(tutorial.path.resolve().parent))
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    return time.perf_counter() - started


def _fence(text: str, lang: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def render(tutorial: Tutorial, seconds: float) -> str:
    """The page in Markdown: title, introduction, how to run it, then every cell with its output."""
    name = tutorial.path.name
    parts = [
        f"# {tutorial.title}",
        tutorial.intro,
        '!!! tip "Run it yourself"\n'
        f"    `python docs/tutorials/{name}` (the script: [{name}]({name})). The output on this page is what "
        f"the script printed when these pages were built; it ran in {seconds:.0f} s there, with one torch "
        "thread.",
    ]
    for cell in tutorial.cells:
        if cell.kind == "markdown":
            parts.append(cell.source)
            continue
        parts.append(_fence(cell.source, "python"))
        if cell.output.strip():
            parts.append(_fence(cell.output, "text"))
        parts.extend(f"![Figure {k} of this cell]({png})" for k, png in enumerate(cell.figures, start=1))
    return "\n\n".join(part for part in parts if part) + "\n"


def run(path: Path, out_dir: Path) -> Path:
    """Parse, execute and render one tutorial into ``out_dir``; return the Markdown file written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tutorial = parse(path)
    seconds = execute(tutorial, out_dir)
    page = out_dir / f"{path.stem}.md"
    page.write_text(render(tutorial, seconds), encoding="utf-8")
    return page


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python docs/run_tutorial.py TUTORIAL.py OUT_DIR", file=sys.stderr)
        return 2
    try:
        run(Path(argv[0]), Path(argv[1]))
    except TutorialError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
