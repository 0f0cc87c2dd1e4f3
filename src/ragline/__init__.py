"""ragline: a production Retrieval-Augmented Generation service."""

from .engine import Engine
from .errors import (
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
from .models import Answer, Chunk, Citation, Context, DeadLetter, Document, Hit, IngestReport, Query
from .settings import Settings

__version__ = "0.1.0"

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
