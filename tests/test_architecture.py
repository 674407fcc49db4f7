"""Structure rules that code review alone does not keep: which modules may import which."""

from __future__ import annotations

import ast
import re

from import_graph import SRC, cycles, import_graph, reachable


def test_loop_and_annotate_never_reach_the_segmentation_package():
    """The loop and the labelling projects talk to the task interface only; the segmentation task is
    found through the task registry (by import path), so no import edge, direct or transitive, leads from
    them into ``forgetting.segmentation``."""
    graph = import_graph()
    starts = ["forgetting.loop"] + [m for m in graph if m.startswith("forgetting.annotate")]
    assert len(starts) > 3  # the annotate package was found
    for start in starts:
        direct = {m for m in graph[start] if m.startswith("forgetting.segmentation")}
        assert not direct, f"{start} imports {sorted(direct)}"
        through = {m for m in reachable(graph, start) if m.startswith("forgetting.segmentation")}
        assert not through, f"{start} reaches {sorted(through)}"


def test_the_segmentation_task_depends_on_the_interface_not_the_reverse():
    graph = import_graph()
    assert "forgetting.tasks.base" in graph["forgetting.segmentation.task"]
    for module in (m for m in graph if m.startswith("forgetting.tasks")):
        assert not {m for m in reachable(graph, module) if m.startswith("forgetting.segmentation")}, module


def _branches_and_imports(text: str) -> list[str]:
    """The source of every condition (``if``, ``elif``, conditional expression, ``while``, ``match``,
    comparison) and import statement in ``text``; docstrings and comments are not code and do not count."""
    tree = ast.parse(text)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            found.append(ast.get_source_segment(text, node.test) or "")
        elif isinstance(node, ast.Match):
            found.append(ast.get_source_segment(text, node.subject) or "")
        elif isinstance(node, ast.Compare | ast.Import | ast.ImportFrom):
            found.append(ast.get_source_segment(text, node) or "")
    return found


def test_no_segmentation_branch_in_the_loop_or_the_session():
    """`grep segmentation` in the loop, the labelling session and the labelling project finds no branch and no
    import: the session and the loop talk to a Task, the project to its kind of labels, chosen once by a
    lookup table (``annotate/labels.py``)."""
    for rel in ("forgetting/loop.py", "forgetting/annotate/session.py", "forgetting/annotate/project.py"):
        text = (SRC / rel).read_text(encoding="utf-8")
        code = [ln for ln in text.splitlines() if "segmentation" in ln.lower()]
        branches = [ln for ln in code if re.search(r"^\s*(if|elif|import|from)\b", ln)]
        assert not branches, f"{rel}: {branches}"
        conditions = [c for c in _branches_and_imports(text) if "segmentation" in c.lower()]
        assert not conditions, f"{rel}: {conditions}"
        assert "targets.ndim" not in text and "ndim == 3" not in text, rel


def test_the_branch_check_sees_branches():
    """The check above is not vacuous: it finds the branches of a snippet that has them."""
    snippet = (
        'x = 1 if settings.task == "segmentation" else 2\n'
        "if kind:\n"
        "    from forgetting.segmentation import task\n"
    )
    assert len([c for c in _branches_and_imports(snippet) if "segmentation" in c]) == 3


def test_strategies_are_not_probed():
    """Strategies declare what they can do; nothing outside the strategies package inspects their type."""
    pattern = re.compile(
        r"isinstance\([^)]*Strategy|type\([^)]*\)\.select\b|uses_precomputed|(get|has)attr\([^)]*strateg"
    )
    offenders = []
    for path in (SRC / "forgetting").rglob("*.py"):
        if "strategies" in path.parts:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{no}: {line.strip()}")
    assert not offenders, offenders


def test_no_import_cycle_in_the_package():
    """Every import counts (module level, inside functions, under TYPE_CHECKING); `from pkg import sub`
    imports the module pkg.sub, `from pkg import name` the package."""
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_the_import_graph_counts_function_and_type_checking_imports(tmp_path, monkeypatch):
    import import_graph

    pkg = tmp_path / "forgetting"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from forgetting import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from forgetting.a import f\n"
    )
    monkeypatch.setattr(import_graph, "SRC", tmp_path)
    graph = import_graph.import_graph()
    assert graph["forgetting.a"] == {"forgetting.b"} and graph["forgetting.b"] == {"forgetting.a"}
    assert cycles(graph) == [["forgetting.a", "forgetting.b"]]


_BARE = {"ValueError", "KeyError", "TypeError", "RuntimeError", "IndexError"}
#: (module, function) pairs whose bare errors are converted by their caller: model option validators,
#: whose ValueError text ("an integer >= 1") the model registry turns into a ConfigError naming the option,
#: and the settings helpers that only pydantic validators call.
_CONVERTED_BY_CALLER = {
    ("forgetting.models.registry", "_positive_int"),
    ("forgetting.models.registry", "_probability"),
    ("forgetting.models.registry", "_int_tuple"),
    ("forgetting.models.registry", "check"),
    ("forgetting.experiments.config", "_unique"),
    ("forgetting.settings", "check_subsample"),
}


def _bare_raises(tree: ast.AST, module: str) -> list[str]:
    """Raises of a built-in error type that a user could see: not inside a pydantic validator (pydantic
    turns ValueError into its ValidationError, which our config loaders name), not caught by an enclosing
    ``try`` of the same function, not a caller-converted validator."""
    found: list[str] = []

    def visit(node: ast.AST, func: ast.FunctionDef | ast.AsyncFunctionDef | None, caught: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child, set())
                continue
            if isinstance(child, ast.Try):
                handled = set()
                for handler in child.handlers:
                    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                    handled |= {t.id for t in types if isinstance(t, ast.Name)}
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), func, caught | handled)
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    visit(part, func, caught)
                continue
            if isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call):
                name = child.exc.func.id if isinstance(child.exc.func, ast.Name) else None
                decorators = [ast.unparse(d) for d in func.decorator_list] if func is not None else []
                validator = any("validator" in d for d in decorators)
                converted = func is not None and (module, func.name) in _CONVERTED_BY_CALLER
                if name in _BARE and name not in caught and not validator and not converted:
                    found.append(f"{module}:{child.lineno} raise {name}")
            visit(child, func, caught)

    visit(tree, None, set())
    return found


def test_user_facing_errors_are_the_projects_named_errors():
    """A user catches ForgettingError (the CLI turns it into exit code 2 and a message); a bare ValueError
    from the library would be a raw traceback. Named errors keep their built-in base (ShapeError is a
    ValueError), so ``except ValueError`` still works."""
    from import_graph import modules

    found = []
    for name, path in modules().items():
        found += _bare_raises(ast.parse(path.read_text(encoding="utf-8")), name)
    assert found == [], "bare built-in errors raised: " + ", ".join(found)


def test_the_bare_raise_check_sees_bare_raises():
    code = (
        "def f(x):\n    raise ValueError('x')\n"
        "def g(x):\n    try:\n        raise TypeError('t')\n    except TypeError:\n        pass\n"
        "@field_validator('a')\ndef h(x):\n    raise ValueError('v')\n"
    )
    assert _bare_raises(ast.parse(code), "m") == ["m:2 raise ValueError"]


def test_the_settings_schema_depends_on_errors_and_config_helpers_only():
    """``forgetting.settings`` sits below everything that uses it: the runtime (training, the loop,
    segmentation) and every config (experiments, maps, augment, profile, labelling projects) import it, it
    imports none of them, and the labelling projects no longer reach the experiments package for it."""
    graph = import_graph()
    assert reachable(graph, "forgetting.settings") <= {"forgetting._config", "forgetting.exceptions"}
    users = [m for m in graph if "forgetting.settings" in graph[m]]
    for module in (
        "forgetting.training",
        "forgetting.loop",
        "forgetting.experiments.config",
        "forgetting.segmentation.maps_config",
        "forgetting.segmentation.augment_protocol",
        "forgetting.profile.config",
        "forgetting.annotate.settings",
    ):
        assert module in users, module
    assert not {m for m in graph["forgetting.annotate.settings"] if m.startswith("forgetting.experiments")}


_DEFINED_ONCE = {
    # the strict pydantic base of a settings section, and the shared value types and choices
    "strict base": re.compile(r"^class _?Strict\(BaseModel\)"),
    "value type": re.compile(
        r"^(PositiveInt|NonNegativeInt|PositiveFloat|NonNegativeFloat|Seed|Subsample|Reduction|"
        r"ClassWeight\w*|Optimizer|Schedule|Unit|SubsampleMode)\s*=",
    ),
    "class-weight choices": re.compile(r"Literal\[\"median\", \"balanced\""),
    "optimizer choices": re.compile(r"Literal\[\"adam\", \"sgd\"\]"),
    "schedule choices": re.compile(r"Literal\[\"constant\", \"plateau\", \"cosine\"\]"),
    "track presets": re.compile(r"^TRACK_PRESETS\b.*="),
}


def test_settings_types_are_defined_once_in_the_settings_module():
    """The strict base, the value types and the choices of the settings are spelled in
    ``forgetting/settings.py`` only; every other module imports them."""
    found: dict[str, list[str]] = {name: [] for name in _DEFINED_ONCE}
    for path in sorted((SRC / "forgetting").rglob("*.py")):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name, pattern in _DEFINED_ONCE.items():
                if pattern.search(line):
                    found[name].append(f"{path.relative_to(SRC)}:{no}")
    for name, places in found.items():
        assert places, f"the check for {name} finds nothing: it no longer matches the definition"
        assert {p.split(":")[0] for p in places} == {"forgetting/settings.py"}, (name, places)
