"""MkDocs hooks: run every tutorial, draw the getting-started figures, write the CLI reference.

Nothing here is cached: every build runs every script again, so a tutorial that breaks fails the build.

- Every ``docs/tutorials/<name>.py`` is run by ``docs/run_tutorial.py`` in a fresh temporary directory,
  in a subprocess with one torch thread; its page ``tutorials/<name>.md`` and its figures are added to
  the site. Adding a tutorial is one script plus its line in ``nav`` (mkdocs.yml).
- ``docs/quickstart_figures.py`` runs a small quickstart grid and writes the report's figures under
  ``getting-started/`` (the getting-started page shows them) and its tables, which replace the marker
  ``<!-- generated: quickstart-tables -->`` of that page.
- ``reference/cli.md`` is written from the typer app (every command, argument and option with its help),
  so the CLI reference cannot drift from ``forgetting --help``.
- ``reference/api.md`` lists every name of ``forgetting.__all__``, grouped by the module that defines it,
  and ``reference/integrations.md`` every name of the integration modules' ``__all__``; mkdocstrings
  renders each from its docstring. A name added to ``__all__`` appears without editing any page.
- ``peers-results.md`` is ``benchmarks/peers/RESULTS.md`` (written by ``make bench-peers``) as it is.

``FORGETTING_DOCS_JOBS`` sets how many scripts run at once (default 2).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # document this checkout, not whatever `forgetting` the venv has installed
    sys.path.insert(0, str(SRC))

log = logging.getLogger("mkdocs.hooks.forgetting")
MARKER = re.compile(r"<!-- generated: (?P<name>[\w-]+) -->")
_fragments: dict[str, str] = {}  # Markdown written by the scripts for a page's marker, by name


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _run_script(name: str, argv: list[str], out_dir: Path) -> tuple[str, float]:
    """Run one script in its own temporary working directory; raise PluginError when it fails."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"forgetting-docs-{name}-") as cwd:
        done = subprocess.run(
            [sys.executable, *argv, str(out_dir)], cwd=cwd, env=_env(), capture_output=True, text=True
        )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + "\n" + done.stderr).strip().splitlines()[-40:])
        raise PluginError(
            f"docs script {name} failed (exit {done.returncode}) after {seconds:.0f} s:\n{tail}"
        )
    return name, seconds


def _add(files: Files, config, src_uri: str, content: bytes | str) -> None:
    existing = files.get_file_from_path(src_uri)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, src_uri, content=content))


def tutorials() -> list[Path]:
    """The tutorial scripts, in name order."""
    return sorted((DOCS / "tutorials").glob("*.py"))


def on_files(files: Files, config) -> Files:
    jobs = max(1, int(os.environ.get("FORGETTING_DOCS_JOBS", "2")))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forgetting-docs-") as tmp:
        out = Path(tmp)
        work = [("getting-started figures", [str(DOCS / "quickstart_figures.py")], out / "getting-started")]
        work += [
            (path.stem, [str(DOCS / "run_tutorial.py"), str(path)], out / "tutorials") for path in tutorials()
        ]
        log.info("running %d docs scripts, %d at a time", len(work), jobs)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_script, name, argv, target) for name, argv, target in work]
            errors = []
            for future in futures:
                try:
                    name, seconds = future.result()
                    log.info("docs script %s: %.0f s", name, seconds)
                except PluginError as err:
                    errors.append(str(err))
        if errors:
            raise PluginError("\n\n".join(errors))
        _fragments.clear()
        for path in sorted(out.rglob("*")):
            if not path.is_file():
                continue
            if path.parent.name == "getting-started" and path.suffix == ".md":
                _fragments[f"quickstart-{path.stem}"] = path.read_text(encoding="utf-8")
            else:
                _add(files, config, path.relative_to(out).as_posix(), path.read_bytes())
    _add(files, config, "reference/cli.md", cli_reference())
    _add(files, config, "reference/api.md", api_reference())
    _add(files, config, "reference/integrations.md", integrations_reference())
    _add(files, config, "peers-results.md", (ROOT / "benchmarks" / "peers" / "RESULTS.md").read_bytes())
    log.info("docs scripts done in %.0f s", time.perf_counter() - started)
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in _fragments:
            raise PluginError(
                f"{page.file.src_uri}: no generated fragment {name!r} (known: {sorted(_fragments)})"
            )
        return _fragments[name]

    return MARKER.sub(fill, markdown)


# --------------------------------------------------------------------------------------------------------
# CLI reference


def _plain(text: str) -> str:
    """Typer help text (rich markup mode) as Markdown: rich's escapes and click's \\b markers removed."""
    text = text.replace("\\[", "[").replace("\b", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _cell(text: str) -> str:
    return " ".join(_plain(text).split()).replace("|", "\\|")


def cli_reference() -> str:
    """The page ``reference/cli.md``: every command of ``forgetting`` with its arguments and options."""
    import click
    import typer.main

    from forgetting.cli import app

    group = typer.main.get_command(app)
    root = click.Context(group, info_name="forgetting")
    parts = [
        "# Command line",
        "Generated from the `forgetting` command itself when these pages were built (the same text as "
        "`forgetting COMMAND --help`). Every command exits with status 2 and a one-line message on a "
        "mistake a user can fix (a bad config, a missing file), never with a traceback.",
        f"```text\n{group.get_usage(root)}\n```",
        _plain(group.help or ""),
    ]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is None or command.hidden:
            continue
        ctx = click.Context(command, info_name=name, parent=root)
        parts += [
            f"## `forgetting {name}`",
            _plain(command.help or ""),
            f"```text\n{command.get_usage(ctx)}\n```",
        ]
        rows = []
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if isinstance(param, click.Argument):
                names = f"`{param.make_metavar(ctx)}`"
                help_text = getattr(param, "help", None) or ""
                extra = "required" if param.required else "optional"
            else:
                record = param.get_help_record(ctx)
                if record is None:
                    continue
                names = f"`{record[0]}`"
                help_text = record[1]
                extra = ""
            rows.append(f"| {names} | {_cell(help_text)}{' (' + extra + ')' if extra else ''} |")
        if rows:
            parts.append("| argument / option | meaning |\n|---|---|\n" + "\n".join(rows))
    return "\n\n".join(p for p in parts if p) + "\n"


# --------------------------------------------------------------------------------------------------------
# API reference

INTEGRATIONS = ("lightning", "transformers", "mapping")  # forgetting.integrations.<name>, each with __all__

# Sections of the API page, by the module that defines a name (the first matching prefix wins).
SECTIONS = [
    ("forgetting.events", "Counting events"),
    ("forgetting.observe", "Observing training"),
    ("forgetting.callbacks", "Observing training"),
    ("forgetting.loop", "The active-learning loop"),
    ("forgetting.records", "The active-learning loop"),
    ("forgetting.initial", "The active-learning loop"),
    ("forgetting.training", "Training"),
    ("forgetting.strategies", "Strategies and selectors"),
    ("forgetting.tasks", "Tasks"),
    ("forgetting.segmentation", "Segmentation"),
    ("forgetting.data", "Data"),
    ("forgetting.models", "Models"),
    ("forgetting.evaluation", "Evaluation and inference"),
    ("forgetting.inference", "Evaluation and inference"),
    ("forgetting.devices", "Evaluation and inference"),
    ("forgetting.summaries", "Dynamics summaries"),
    ("forgetting.experiments", "Experiments and reports"),
    ("forgetting.profile", "Explaining a classifier"),
    ("forgetting.annotate", "Labelling projects"),
    ("forgetting.exceptions", "Errors"),
]
OTHER = "More"  # names from a module that SECTIONS does not list yet


def _defining_module(name: str, obj: object) -> str:
    if inspect.ismodule(obj):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and module.startswith("forgetting") and not module.startswith("collections"):
        return module
    for mod_name, mod in sorted(sys.modules.items()):  # constants and type aliases: where they are assigned
        if mod_name.startswith("forgetting.") and mod.__dict__.get(name) is obj:
            source = getattr(mod, "__file__", None)
            if source and re.search(rf"^{re.escape(name)}\s*[:=]", Path(source).read_text("utf-8"), re.M):
                return mod_name
    raise PluginError(f"cannot tell which module defines forgetting.{name}")


def api_reference() -> str:
    """The page ``reference/api.md``: every name of ``forgetting.__all__``, by section."""
    import forgetting

    groups: dict[str, list[tuple[str, str]]] = {}
    order = [*dict.fromkeys(title for _, title in SECTIONS), OTHER]
    for name in forgetting.__all__:
        if name.startswith("__"):
            continue
        module = _defining_module(name, getattr(forgetting, name))
        title = next(
            (t for prefix, t in SECTIONS if module == prefix or module.startswith(prefix + ".")), OTHER
        )
        groups.setdefault(title, []).append((name, module))
    parts = [
        "# Python API",
        "Every name that `import forgetting` exports (`forgetting.__all__`), from its docstring; the page is "
        "generated when the site is built, so a new name appears here by itself. Shapes and dtypes are "
        "in the names (`probs_N_C`) and the docstrings. The framework callbacks are under "
        "[Integrations](integrations.md); the command line under [Command line](cli.md).",
    ]
    for title in order:
        if title not in groups:
            continue
        parts.append(f"## {title}")
        for name, _module in groups[title]:
            obj = getattr(forgetting, name)
            if inspect.ismodule(obj):  # a callable package (forgetting.profile): the package, its own names
                own = [m for m in getattr(obj, "__all__", []) if m == name or m not in forgetting.__all__]
                members = ", ".join(f'"{m}"' for m in own)
                parts.append(
                    f"::: {obj.__name__}\n    options:\n      heading_level: 3\n"
                    f"      show_submodules: false\n      members: [{members}]"
                )
                continue
            parts.append(f"::: forgetting.{name}\n    options:\n      heading_level: 3")
    return "\n\n".join(parts) + "\n"


def integrations_reference() -> str:
    """The page ``reference/integrations.md``: the integration modules, every name of their ``__all__``."""
    import importlib

    parts = [
        "# Integrations",
        "`forgetting.integrations.lightning` (extra `lightning`), `forgetting.integrations.transformers` "
        "(extra `transformers`) and `forgetting.integrations.mapping` (dict items, used by the Hugging Face "
        "callback). `import forgetting` imports none of them. See "
        "[Lightning and Hugging Face](../guide/integrations.md) for how they fit together.",
    ]
    for short in INTEGRATIONS:
        module = importlib.import_module(f"forgetting.integrations.{short}")
        members = ", ".join(f'"{name}"' for name in module.__all__)
        parts.append(
            f"::: forgetting.integrations.{short}\n    options:\n      show_root_full_path: true\n"
            f"      members: [{members}]"
        )
    return "\n\n".join(parts) + "\n"
