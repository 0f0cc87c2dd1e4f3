"""schemathesis fuzzes every operation of the OpenAPI spec against a live server:
no 5xx, and every status code, content type, header and body as the spec says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ragline.service.api.auth import KeyStore

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def test_the_api_conforms_to_its_openapi_spec_under_fuzzing(serve_app, tmp_path):
    server = serve_app(rate_limit_rps=0)
    key, _ = KeyStore(tmp_path / "keys.json").create("fuzz", ["query", "ingest"])
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {key}",
            "--checks",
            CHECKS,
            "-n",
            "20",
            "--seed",
            "7",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout
