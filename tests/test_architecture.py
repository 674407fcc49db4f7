"""Structure rules that code review alone does not keep: which modules may import which."""

from __future__ import annotations

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


def test_no_segmentation_branch_in_the_loop_or_the_session():
    """`grep segmentation` in the loop and the labelling session finds no branch and no import."""
    for rel in ("forgetting/loop.py", "forgetting/annotate/session.py"):
        text = (SRC / rel).read_text(encoding="utf-8")
        code = [ln for ln in text.splitlines() if "segmentation" in ln.lower()]
        branches = [ln for ln in code if re.search(r"\b(if|elif|import|from)\b", ln)]
        assert not branches, f"{rel}: {branches}"
        assert "targets.ndim" not in text and "ndim == 3" not in text, rel


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
