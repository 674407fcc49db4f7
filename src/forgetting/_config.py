"""TOML config files validated by pydantic, with errors a user can act on.

Shared by every config of the project (experiments, forgetting maps, augmentation, labelling projects), so
that all of them read files, report bad TOML, and name bad keys and values the same way.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from forgetting.exceptions import ConfigError, ForgettingError

__all__ = ["describe_validation_error", "parse_toml", "read_config_file", "validate_toml"]

ModelT = TypeVar("ModelT", bound=BaseModel)

# pydantic names union members and wrapped types in error locations ("list[...]", "literal[...]", "int");
# they are not keys, so they are dropped from the paths shown to the user.
_TYPE_TAG = re.compile(
    r"^(int|float|str|bool|none|list\[.*\]|dict\[.*\]|constrained-.*|function-.*|literal\[.*\]|"
    r"is-instance\[.*\]|lax-.*|strict-.*|nullable\[.*\])$"
)


def read_config_file(path: str | Path) -> str:
    """The text of a config file; :class:`ConfigError` naming the path when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); TOML files are "
            "UTF-8: save it as UTF-8"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a directory; pass a .toml file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc


def parse_toml(
    text: str | Mapping[str, Any], source: str, *, error: type[ForgettingError] = ConfigError
) -> Mapping[str, Any]:
    """TOML text parsed to a mapping (a mapping is returned as is); ``error`` when it is not valid TOML."""
    if not isinstance(text, str):
        return text
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc


def _section_model(model: type[BaseModel], section: str) -> type[BaseModel] | None:
    """The pydantic model of the table ``section`` (dotted path, ``""`` for the top level), if it is one."""
    current: Any = model
    for key in filter(None, section.split(".")):
        field = (
            current.model_fields.get(key)
            if isinstance(current, type) and issubclass(current, BaseModel)
            else None
        )
        current = _model_of(field.annotation) if field is not None else None
        if current is None:
            return None
    return current


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds: itself, or the one model of an optional (``Model | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [m for m in get_args(annotation) if m is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel):
        return members[0]
    return None


def _format_loc(loc: Sequence[str | int], raw: Mapping[str, Any], prefix: str = "") -> tuple[str, Any]:
    """A readable key path for a pydantic error location (after ``prefix``), and the raw value there (or
    ``...``)."""
    parts: list[str | int] = [p for p in loc if not (isinstance(p, str) and _TYPE_TAG.match(p))]
    text = prefix
    node: Any = raw
    for p in parts:
        if isinstance(p, int):
            if isinstance(node, list):
                text += f"[{p}]"
                node = node[p] if p < len(node) else ...
            # A scalar given for a list field is validated as a one-element list: keep the scalar's path.
        else:
            text = f"{text}.{p}" if text else p
            node = node.get(p, ...) if isinstance(node, Mapping) else ...
    return text or "<top level>", node


def describe_validation_error(
    exc: ValidationError,
    raw: Mapping[str, Any],
    source: str,
    model: type[BaseModel],
    *,
    what: str = "config",
    prefix: str = "",
) -> str:
    """One line per problem: the key path, the bad value, and the allowed keys (for an unknown key, read off
    the section's model, plus the input-only keys it lists in ``extra_input_keys``) or allowed values.

    ``prefix`` is where ``model`` sits (``"train"``: key paths read ``train.lr``)."""
    lines: list[str] = []
    for err in exc.errors():
        path, value = _format_loc(err["loc"], raw, prefix)
        if err["type"] == "extra_forbidden":
            section = path.rsplit(".", 1)[0] if "." in path else ""
            sub = _section_model(model, section.removeprefix(prefix).lstrip("."))
            allowed = (
                sorted([*sub.model_fields, *getattr(sub, "extra_input_keys", ())]) if sub is not None else []
            )
            where = f" in [{section}]: " if section else " at the top level: "
            line = f"unknown key `{path}`; allowed keys{where}" + ", ".join(allowed)
        else:
            msg = err["msg"].removeprefix("Value error, ")
            ctx = err.get("ctx") or {}
            if err["type"] == "literal_error" and "expected" in ctx:
                msg = f"allowed values: {ctx['expected']}"
            shown = "" if value is ... else f" = {value!r}"
            line = f"`{path}`{shown}: {msg}"
        if line not in lines:  # a union reports one error per member; keep one line per message
            lines.append(line)
    head = f"{source}: invalid {what} ({len(lines)} problem{'s' if len(lines) != 1 else ''})"
    return head + "\n  - " + "\n  - ".join(lines)


def validate_toml(
    model: type[ModelT],
    text: str | Mapping[str, Any],
    *,
    source: str,
    what: str = "config",
    error: type[ForgettingError] = ConfigError,
    strict: bool | None = None,
) -> ModelT:
    """Parse TOML text (or take a parsed mapping) and validate it into ``model``.

    Raises:
        error: the text is not valid TOML, or a key or value is bad (every problem named, see
            :func:`describe_validation_error`).
    """
    raw = parse_toml(text, source, error=error)
    try:
        return model.model_validate(dict(raw), strict=strict)
    except ValidationError as exc:
        raise error(describe_validation_error(exc, raw, source, model, what=what)) from None
