"""Griffe extensions for the API reference: Sphinx roles become cross-references; grouped arguments split.

Grouped arguments: the house style documents related parameters on one line (``every, unit: observe every
...``), which Google-style parsers read as one parameter named ``every, unit``. :class:`GroupedArguments`
rewrites such an entry of an ``Args:`` section into one entry per name, each with the shared description,
so every parameter gets its row (with its type from the signature) and none is reported missing.

Sphinx roles:

The docstrings are Google style, and some name other objects with Sphinx roles (``:class:`~a.b.C```,
``:func:`fit```). Markdown has no roles, so they would show as ``:class:`` followed by code. This
extension rewrites each role, once the package is loaded, into an *optional* autorefs cross-reference:
a link when the target has a page in the API reference, plain code otherwise (optional references never
fail the strict build, since a docstring may name a private helper). Relative names are resolved in the
scope of the object that holds the docstring, as Sphinx does.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ARGS_HEADER = re.compile(r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Other Parameters):\s*$")
GROUPED = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:\s*,\s*\w+)+)\s*:\s?(?P<text>.*)$")
ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(?P<tilde>~?)(?P<target>[^`<>]+)`"
)


def _resolve(obj: griffe.Object | griffe.Alias, target: str) -> str | None:
    head, _, rest = target.partition(".")
    scope: Any = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return target if "." in target else None


def rewrite(text: str, obj: griffe.Object | griffe.Alias) -> str:
    """``text`` with every Sphinx role replaced by an optional cross-reference (or code)."""

    def replace(match: re.Match[str]) -> str:
        target = match["target"].strip().rstrip("()")
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        code = f"<code>{html.escape(shown)}</code>"
        identifier = _resolve(obj, target)
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring of the package, once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = rewrite(obj.docstring.value, obj)
            stack.extend(member for member in obj.members.values() if not member.is_alias)


def split_grouped_arguments(text: str) -> str:
    """``text`` with every ``a, b: description`` entry of an ``Args:`` section split into ``a:`` and ``b:``
    entries that share the description (and its continuation lines)."""
    lines = text.splitlines()
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = ARGS_HEADER.match(line)
        if header:
            section_indent = len(header["indent"])
            out.append(line)
            i += 1
            continue
        if section_indent is not None and line.strip() and len(line) - len(line.lstrip()) <= section_indent:
            section_indent = None  # the section ended
        grouped = GROUPED.match(line) if section_indent is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        indent = grouped["indent"]
        continuation = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].startswith(indent + " ")):
                break
            continuation.append(lines[i])
            i += 1
        for name in (n.strip() for n in grouped["names"].split(",")):
            out.append(f"{indent}{name}: {grouped['text']}")
            out.extend(continuation)
    return "\n".join(out)


class GroupedArguments(griffe.Extension):
    """Split the grouped argument entries of every docstring of the package, once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None and "," in obj.docstring.value:
                obj.docstring.value = split_grouped_arguments(obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
