"""The documentation site: docstrings of every public name, tutorials that run, the README's size.

The full site build (``mkdocs build --strict``, every tutorial run) is the slow test at the end; ``make
docs`` runs the same build.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import forgetting

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
INTEGRATIONS = ("lightning", "transformers", "mapping")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _attribute_docstring(name: str, obj: object) -> str | None:
    """The string literal right after ``name = ...`` (or ``name: T = ...``) in the module defining it."""
    for mod_name, mod in sorted(sys.modules.items()):
        if not mod_name.startswith("forgetting") or mod.__dict__.get(name) is not obj:
            continue
        source = getattr(mod, "__file__", None)
        if not source:
            continue
        body = ast.parse(Path(source).read_text(encoding="utf-8")).body
        for node, after in itertools.pairwise(body):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                    return str(after.value.value)
    return None


def _own_doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    if dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}("):
        return ""  # the signature that @dataclass writes when the class has no docstring
    return doc


def _missing_docstrings(module: ModuleType) -> list[str]:
    missing = []
    for name in module.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        where = f"{module.__name__}.{name}"
        if inspect.isclass(obj):
            if not _own_doc(obj).strip():
                missing.append(where)
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if (inspect.isfunction(func) or isinstance(value, property)) and not (
                    inspect.getdoc(getattr(obj, attr)) or ""
                ).strip():
                    missing.append(f"{where}.{attr}")  # a docstring here or on the method it overrides
        elif inspect.ismodule(obj):  # a callable package (forgetting.profile): its docstring, then its names
            if not (obj.__doc__ or "").strip():
                missing.append(where)
            missing += _missing_docstrings(obj) if hasattr(obj, "__all__") else []
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(where)
        elif not (_attribute_docstring(name, obj) or "").strip():
            missing.append(where)  # a constant or a type alias: the string literal after its assignment
    return missing


def test_every_public_name_has_a_docstring() -> None:
    """Every name of ``forgetting.__all__`` and of the integration modules, and every public method and
    property of their classes, has a docstring (the API reference is made of them)."""
    modules = [forgetting]
    for short in INTEGRATIONS:
        try:
            modules.append(importlib.import_module(f"forgetting.integrations.{short}"))
        except forgetting.MissingDependencyError:  # extras not installed: document what is there
            continue
    missing = [name for module in modules for name in _missing_docstrings(module)]
    assert not missing, f"public names without a docstring: {missing}"


def test_the_docstring_check_catches_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails on a module whose public names lack docstrings."""
    module = ModuleType("forgetting._docs_probe")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # @dataclass looks its module up
    exec(
        "from dataclasses import dataclass\n"
        "@dataclass\nclass Rec:\n    x: int = 0\n"
        "def f(): pass\n"
        "class C:\n    '''Documented.'''\n    def method(self): pass\n"
        "    @property\n    def p(self): return 1\n",
        module.__dict__,
    )
    module.__all__ = ["Rec", "f", "C"]
    assert _missing_docstrings(module) == [
        "forgetting._docs_probe.Rec",
        "forgetting._docs_probe.f",
        "forgetting._docs_probe.C.method",
        "forgetting._docs_probe.C.p",
    ]


def test_a_tutorial_runs_and_renders(tmp_path: Path) -> None:
    """The events tutorial (the smallest, a few seconds) runs as the docs build runs it: a page with its
    printed output after each code cell, and its figure as a PNG."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(DOCS / "run_tutorial.py"), str(DOCS / "tutorials" / "events.py"), str(out)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = (out / "events.md").read_text(encoding="utf-8")
    assert page.startswith("# Counting events while a model trains\n")
    assert re.search(r"```text\n10 epochs, training accuracy [01]\.\d{3}, 10 observation passes", page)
    assert "observations per sample: [10]" in page
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures and all(f"]({name})" in page for name in figures)


def test_a_failing_tutorial_fails(tmp_path: Path) -> None:
    """A cell that raises stops the run with exit status 1 and names the cell's line: the build fails."""
    script = tmp_path / "broken.py"
    script.write_text('"""Broken\n\nIt fails."""\n\n# %%\nx = 1\n\n# %%\nraise ValueError("no")\n')
    done = subprocess.run(
        [sys.executable, str(DOCS / "run_tutorial.py"), str(script), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "the cell at line 9 raised ValueError('no')" in done.stderr
    assert not (tmp_path / "out" / "broken.md").exists()


def test_every_tutorial_parses_compiles_and_is_in_the_nav() -> None:
    """Each tutorial has a title, valid cells, code that compiles, a nav line and a line in the index."""
    run_tutorial = _load(DOCS / "run_tutorial.py")
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    index = (DOCS / "tutorials" / "index.md").read_text(encoding="utf-8")
    assert len(TUTORIALS) >= 8
    for path in TUTORIALS:
        tutorial = run_tutorial.parse(path)
        assert tutorial.title and any(cell.kind == "code" for cell in tutorial.cells), path
        for cell in tutorial.cells:
            if cell.kind == "code":
                compile(cell.source, f"{path}:{cell.line}", "exec")
        assert f"tutorials/{path.stem}.md" in nav, f"{path.name} is not in the nav of mkdocs.yml"
        assert f"({path.stem}.md)" in index, f"{path.name} is not listed in docs/tutorials/index.md"


def test_readme_is_short_and_links_into_the_docs() -> None:
    """The README stays a front page (about 150 lines) and every docs/ page it links to exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "the README links into the docs"
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_cli_reference_covers_every_command() -> None:
    """The generated CLI page has a section for every command of the typer app, with its options."""
    pytest.importorskip("mkdocs")
    import click
    import typer.main

    from forgetting.cli import app

    hooks = _load(DOCS / "hooks.py")
    page = hooks.cli_reference()
    group = typer.main.get_command(app)
    commands = group.list_commands(click.Context(group))
    assert len(commands) >= 10
    for name in commands:
        assert f"## `forgetting {name}`" in page
    assert "--out <path>`" in page and "`--dry-run`" in page


@pytest.mark.slow
def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` passes: every tutorial runs, and no link or reference is broken."""
    pytest.importorskip("mkdocstrings")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    for page in ("index.html", "tutorials/events.html", "reference/api.html", "reference/cli.html"):
        assert (tmp_path / "site" / page).is_file(), page
    fetched = re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["']?(?:https?:)?//""")
    remote = [p.name for p in (tmp_path / "site").rglob("*.html") if fetched.search(p.read_text("utf-8"))]
    assert remote == [], f"pages that load something from the network: {remote}"
