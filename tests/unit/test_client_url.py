"""The client takes the server's base URL however it is written, or says what to pass."""

from __future__ import annotations

import pytest

from ragline import ConfigurationError
from ragline.client import Client, base_url


@pytest.mark.parametrize("given", ["http://h:8095", "http://h:8095/", "http://h:8095/v1", " http://h:8095/v1/ "])
def test_the_base_url_is_taken_with_or_without_v1_and_slashes(given):
    assert base_url(given) == "http://h:8095"


@pytest.mark.parametrize("given", ["h:8080", "ftp://h", "http://", "localhost"])
def test_what_is_not_a_server_url_is_refused_with_an_example(given):
    with pytest.raises(ConfigurationError, match="pass its base, e.g. http://127.0.0.1:8080"):
        base_url(given)


def test_a_client_built_on_a_v1_url_calls_v1_paths_once():
    import httpx

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"status": "ok"})

    with Client("http://h:8095/v1", transport=httpx.MockTransport(handler)) as client:
        client._http.get(f"{client.url}/v1/healthz")
    assert seen == ["/v1/healthz"]
