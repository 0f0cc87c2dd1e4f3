"""Request dependencies: the caller, as authenticated by the Guard middleware.

Authentication, the scope check and the rate limit run in ``middleware.Guard``, before
the body is read; these dependencies hand the result to the routes and declare the
credentials in the OpenAPI spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ragline.core.errors import Unauthorized
from ragline.service.api.auth import Principal

bearer = HTTPBearer(auto_error=False, description="An API key (rl_...) or a JWT.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def caller(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller the Guard authenticated for a route needing ``scope``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
        api_key: Annotated[str | None, Depends(api_key_header)] = None,
    ) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if principal is None:  # a route the Guard does not know as protected: fail closed
            raise Unauthorized("this route needs credentials")
        principal.require(scope)
        return principal

    return dependency


QueryCaller = Annotated[Principal, Depends(caller("query"))]
IngestCaller = Annotated[Principal, Depends(caller("ingest"))]
