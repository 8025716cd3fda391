"""Name -> Upsampler class. Operators register themselves once, in their own file."""
from __future__ import annotations

import importlib
from typing import Iterable, TypeVar

from .base import Upsampler

_REGISTRY: dict[str, type[Upsampler]] = {}
U = TypeVar("U", bound=type[Upsampler])


def register(cls: U) -> U:
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: an Upsampler needs a name to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"{cls.name}: already registered by {_REGISTRY[cls.name].__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_operators() -> None:
    import operators  # noqa: F401  (importing registers every family)


def available() -> list[str]:
    """Registered operator names, in registration order."""
    _load_operators()
    return list(_REGISTRY)


def get(name: str) -> type[Upsampler]:
    _load_operators()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; known operators: {', '.join(_REGISTRY)}") from None


def make(name: str, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int) -> Upsampler:
    """Build operator ``name`` for ``channels`` decoder channels."""
    return get(name)(channels, guide_channels=guide_channels, impl=impl, **hparams)


def defining_modules(names: Iterable[str]) -> list[str]:
    """The modules that register operators ``names``: what a fresh process (an isolated worker, a shard's
    job) imports to know them. ``__main__`` is left out: it cannot be imported by name."""
    return sorted({get(name).__module__ for name in names} - {"__main__"})


def import_modules(modules: Iterable[str]) -> None:
    for module in modules:
        importlib.import_module(module)
