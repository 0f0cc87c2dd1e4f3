"""ragline: a production Retrieval-Augmented Generation service."""

import typing as _typing

from ragline.core.errors import (
    ConfigurationError,
    DependencyTimeout,
    DependencyUnavailable,
    DocumentError,
    Forbidden,
    InvalidInput,
    NotFound,
    PermanentError,
    RaglineError,
    RetryableError,
    Unauthorized,
)

if _typing.TYPE_CHECKING:
    from ragline.core.models import Answer, Chunk, Citation, Context, DeadLetter, Document, Hit, IngestReport, Query
    from ragline.service.engine import Engine
    from ragline.settings import Settings

__version__ = "0.1.0"

# Imported on first use (PEP 562): `import ragline` (and so the command line's --help)
# does not load the engine, numpy or pydantic until one of these is asked for.
_LAZY = {
    "Engine": "service.engine",
    "Settings": "settings",
    **dict.fromkeys(
        ["Answer", "Chunk", "Citation", "Context", "DeadLetter", "Document", "Hit", "IngestReport", "Query"],
        "core.models",
    ),
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DependencyTimeout",
    "DependencyUnavailable",
    "Document",
    "DocumentError",
    "Engine",
    "Forbidden",
    "Hit",
    "IngestReport",
    "InvalidInput",
    "NotFound",
    "PermanentError",
    "Query",
    "RaglineError",
    "RetryableError",
    "Settings",
    "Unauthorized",
    "__version__",
]
