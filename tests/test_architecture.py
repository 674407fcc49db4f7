"""Structure rules that code review alone does not keep: which modules may import which."""

from __future__ import annotations

import ast
import re

from import_graph import SRC, import_graph, reachable


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
