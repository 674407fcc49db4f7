"""The strategy registry: names -> strategy classes, with option validation.

>>> from forgetting.strategies import Input, get_strategy
>>> get_strategy("switch", tie_break="entropy").requires == {Input.DYNAMICS, Input.PROBS}
True

Names are matched case-insensitively and ``_`` is read as ``-`` (``least_confidence`` works).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.strategies.base import Strategy
from forgetting.strategies.bayesian import BaldStrategy, BatchBaldStrategy
from forgetting.strategies.diversity import BadgeStrategy, CoresetStrategy
from forgetting.strategies.dynamics import (
    ForgettingStrategy,
    GaussStrategy,
    SampledCountStrategy,
    SampledSwitchStrategy,
    SwitchStrategy,
)
from forgetting.strategies.uncertainty import (
    EntropyStrategy,
    LeastConfidenceStrategy,
    MarginStrategy,
    RandomStrategy,
)

__all__ = ["STRATEGIES", "get_strategy", "list_strategies", "register_strategy", "strategy_options"]

#: name -> strategy class. Extend it with :func:`register_strategy`.
STRATEGIES: dict[str, type[Strategy]] = {}

S = TypeVar("S", bound=type[Strategy])


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_strategy(cls: S | None = None, *, name: str | None = None, overwrite: bool = False) -> Any:
    """Register a :class:`Strategy` subclass under ``name`` (default ``cls.name``). Usable as a decorator.

    Raises:
        ConfigError: the name is taken and ``overwrite`` is False, or ``cls`` is not a Strategy subclass.
    """

    def register(strategy_cls: S) -> S:
        if not (isinstance(strategy_cls, type) and issubclass(strategy_cls, Strategy)):
            raise ConfigError(f"register_strategy expects a Strategy subclass, got {strategy_cls!r}")
        key = _normalise(name or getattr(strategy_cls, "name", None) or "")
        if not key:
            raise ConfigError(f"{strategy_cls.__name__} has no `name`; pass register_strategy(name=...)")
        if key in STRATEGIES and STRATEGIES[key] is not strategy_cls and not overwrite:
            raise ConfigError(
                f"strategy name {key!r} is already registered to {STRATEGIES[key].__name__}; "
                "pass overwrite=True to replace it"
            )
        STRATEGIES[key] = strategy_cls
        return strategy_cls

    return register if cls is None else register(cls)


def list_strategies(where: Callable[[Strategy], bool] | None = None) -> list[str]:
    """The registered strategy names, sorted; with ``where``, only those whose instance with default options
    satisfies it (strategies that cannot be built without options are left out)."""
    if where is None:
        return sorted(STRATEGIES)
    names = []
    for name in sorted(STRATEGIES):
        try:
            strategy = get_strategy(name)
        except (ConfigError, TypeError):
            continue
        if where(strategy):
            names.append(name)
    return names


def strategy_options(name: str) -> dict[str, Any]:
    """The options of strategy ``name`` and their defaults (``inspect.Parameter.empty`` when required)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name: p.default
        for p in params.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _lookup(name: str) -> type[Strategy]:
    if not isinstance(name, str):
        raise UnknownNameError(f"strategy name must be a string, got {name!r}; known: {list_strategies()}")
    key = _normalise(name)
    if key not in STRATEGIES:
        close = difflib.get_close_matches(key, STRATEGIES, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise UnknownNameError(
            f"unknown strategy {name!r}{hint}; known strategies: {', '.join(list_strategies())}"
        )
    return STRATEGIES[key]


def get_strategy(name: str, **options: Any) -> Strategy:
    """Build the strategy registered as ``name`` with ``options``.

    Raises:
        UnknownNameError: no strategy of that name (the message lists the known ones).
        ConfigError: an option the strategy does not take (the message lists the allowed ones), or a bad
            option value.
    """
    cls = _lookup(name)
    allowed = strategy_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) if allowed else "none"
        raise ConfigError(
            f"strategy {cls.name!r} has no option {', '.join(repr(u) for u in unknown)}; "
            f"allowed options: {allowed_text}"
        )
    return cls(**options)


_BUILTINS: tuple[type[Strategy], ...] = (
    RandomStrategy,
    EntropyStrategy,
    MarginStrategy,
    LeastConfidenceStrategy,
    BaldStrategy,
    BatchBaldStrategy,
    CoresetStrategy,
    BadgeStrategy,
    ForgettingStrategy,
    SwitchStrategy,
    GaussStrategy,
    SampledSwitchStrategy,
    SampledCountStrategy,
)
for _cls in _BUILTINS:
    register_strategy(_cls)
