"""A name imported on first use: the command line's ``--help`` and ``--version`` come back
without loading the engine, numpy, pydantic or httpx (measured: 0.87 s of imports)."""

from __future__ import annotations

import importlib
from typing import Any


class Lazy:
    """Stands for ``module.name``; calling it or reading an attribute imports the module."""

    __slots__ = ("_module", "_name", "_target")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name
        self._target: Any = None

    def _load(self) -> Any:
        if self._target is None:
            self._target = getattr(importlib.import_module(self._module), self._name)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __repr__(self) -> str:
        return f"<lazy {self._module}.{self._name}>"
