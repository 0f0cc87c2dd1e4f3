"""Speaking to Milvus: filter expressions, and pymilvus' and gRPC's errors mapped onto
ragline's error tree (the one place that does)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ragline.core.errors import DependencyTimeout, DependencyUnavailable, InvalidInput, RaglineError
from ragline.core.limits import FILTER_KEY
from ragline.core.models import FilterValue

COLUMNS = {"document_id", "number", "content_hash"}  # filterable as fields, not metadata


@contextlib.contextmanager
def translated(uri: str) -> Iterator[None]:
    """Map pymilvus and gRPC errors onto ragline's error tree: the one place that does."""
    import grpc
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    try:
        yield
    except RaglineError:
        raise
    except MilvusUnavailableException as exc:
        raise DependencyUnavailable(f"Milvus at {uri} is unavailable: {exc.message}") from exc
    except MilvusException as exc:
        message = str(exc.message)
        if exc.code == 1100 or ("invalid" in message.lower() and "expr" in message.lower()):
            raise InvalidInput(f"Milvus rejected the request: {message}") from exc
        if "timeout" in message.lower() or "deadline" in message.lower():
            raise DependencyTimeout(f"Milvus at {uri} timed out: {message}") from exc
        raise DependencyUnavailable(f"Milvus at {uri} failed: {message}") from exc
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DependencyTimeout(f"Milvus at {uri} timed out") from exc
        raise DependencyUnavailable(f"Milvus at {uri} is unavailable: {exc.code().name}") from exc
    except (ConnectionError, TimeoutError) as exc:
        raise DependencyUnavailable(f"Milvus at {uri} is unreachable: {exc}") from exc


@functools.cache
def takes_options_of(function: Any) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


def takes_options(method: Any) -> bool:
    """Whether a MilvusClient method passes extra options (``retry_times``) on to the RPC."""
    return takes_options_of(getattr(method, "__func__", method))


def warm_column_writes() -> None:
    """pymilvus imports scipy.sparse on its first column-based write (to tell sparse
    matrices apart): ~1 s of CPU, done in the background at start rather than inside the
    first write someone waits for."""
    with contextlib.suppress(Exception):
        from pymilvus.client.utils import SciPyHelper

        SciPyHelper._init()


def quote(value: str) -> str:
    """A Milvus string literal (JSON escaping is what its expression grammar accepts)."""
    return json.dumps(value, ensure_ascii=False)


def _literal(value: FilterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (int, float)):
        return repr(value)
    raise InvalidInput(f"unsupported filter value {value!r}")


def filter_expression(tenant: str, filters: Mapping[str, FilterValue] | None = None) -> str:
    """The boolean expression for a tenant and equality / any-of metadata filters."""
    clauses = [f"tenant == {quote(tenant)}"]
    for key, value in (filters or {}).items():
        if not FILTER_KEY.match(key):
            raise InvalidInput(f"filter key {key!r} must be letters, digits and '_'")
        field = key if key in COLUMNS else f'metadata["{key}"]'
        if isinstance(value, list):
            if not value:
                raise InvalidInput(f"filter {key!r} has an empty list of values")
            clauses.append(f"{field} in [{', '.join(_literal(v) for v in value)}]")
        else:
            clauses.append(f"{field} == {_literal(value)}")
    return " and ".join(clauses)


def truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", errors="ignore")
