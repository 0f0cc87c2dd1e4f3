"""One small registry per port: adapters by name or URI scheme.

The built-in adapters register themselves exactly as a third party would, so a new
adapter is one module plus one ``register`` call (see the ``build_*`` functions of
``stores``, ``buses``, ``caches``, ``generators`` and ``embedders``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ragline.core.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    def __init__(self, port: str, setting: str) -> None:
        self.port = port
        self.setting = setting
        self._factories: dict[str, F] = {}

    def register(self, key: str, factory: F) -> None:
        self._factories[key.lower()] = factory

    def factory(self, key: str) -> F:
        found = self._factories.get(key.lower())
        if found is None:
            known = ", ".join(sorted(self._factories))
            raise ConfigurationError(f"no {self.port} named {key!r} ({self.setting}); known: {known}")
        return found

    def names(self) -> list[str]:
        return sorted(self._factories)


def scheme_of(uri: str, default: str = "file") -> str:
    """``redis`` of ``redis://host``; ``default`` for a plain path or name."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else default
