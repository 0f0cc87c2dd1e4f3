"""The gateway-worker protocol: errors cross the bus as codes and come back as the error
the caller would have had in-process; a Failure from a worker older than the codes is
still understood; the gateway needs nothing from the workers package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ragline.core import errors
from ragline.core.models import Failure
from ragline.service.gateway import _as_error
from ragline.service.protocol import ERROR_CODES, INTERNAL, code_of_type, error_code, error_from


@pytest.mark.parametrize(
    ("raised", "code", "caller_gets"),
    [
        (errors.InvalidInput("bad"), "invalid_input", errors.InvalidInput),
        (errors.TooLarge("big"), "too_large", errors.TooLarge),
        (errors.NotFound("gone"), "not_found", errors.NotFound),
        (errors.Forbidden("no"), "forbidden", errors.Forbidden),
        (errors.ConfigurationError("wrong"), "configuration", errors.ConfigurationError),
        (errors.DependencyUnavailable("down"), "unavailable", errors.DependencyUnavailable),
        # a store that timed out in the stage: unavailable, retry later (503)
        (errors.DependencyTimeout("slow"), "timeout", errors.DependencyUnavailable),
        # its constructor takes a queue name and a capacity: rebuilt as the 503 it is
        (errors.Overloaded("milvus", 32), "overloaded", errors.DependencyUnavailable),
        (errors.DocumentError("a.pdf", "encrypted"), "document", errors.DependencyUnavailable),
        (ValueError("not a query"), "invalid_input", errors.InvalidInput),
        (RuntimeError("a bug"), INTERNAL, errors.DependencyUnavailable),
    ],
)
def test_an_error_crosses_the_bus_as_a_code_and_comes_back_as_the_callers_error(raised, code, caller_gets):
    assert error_code(raised) == code
    failure = Failure(request_id="r", stage="retrieve", error_type=type(raised).__name__, error=str(raised), code=code)
    back = Failure.model_validate_json(failure.model_dump_json())
    error = _as_error(back)
    assert type(error) is caller_gets
    assert str(raised) in str(error) and "retrieve stage" in str(error)


def test_the_most_specific_code_wins():
    # Overloaded is a DependencyUnavailable and TooLarge an InvalidInput: their own codes first
    assert error_code(errors.Overloaded("q", 1)) == "overloaded"
    assert error_code(errors.TooLarge("x")) == "too_large"
    assert error_from("no such code", "m").__class__ is errors.DependencyUnavailable


def test_a_failure_from_a_worker_older_than_the_codes_is_read_by_its_class_name():
    old = '{"schema_version": 1, "request_id": "r", "stage": "generate", "error_type": "NotFound", "error": "x"}'
    failure = Failure.model_validate_json(old)
    assert failure.code is None
    assert type(_as_error(failure)) is errors.NotFound
    assert code_of_type("InvalidInput") == "invalid_input"
    assert code_of_type("ValidationError") == "invalid_input"
    assert code_of_type("KeyError") == INTERNAL


def test_every_code_names_a_ragline_error():
    assert all(issubclass(kind, errors.RaglineError) for kind in ERROR_CODES.values())
    assert INTERNAL not in ERROR_CODES


def test_the_gateway_imports_nothing_from_the_workers_package():
    source = Path(__file__).resolve().parents[2] / "src" / "ragline" / "service" / "gateway.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(("." * node.level) + node.module)
    assert not any(name.lstrip(".").startswith("workers") for name in imported), imported
