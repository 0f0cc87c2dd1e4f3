"""Request dependencies: the authenticated, rate-limited caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..errors import RateLimited
from ..observability import tenant_var
from .auth import Principal

bearer = HTTPBearer(auto_error=False, description="An API key (rl_...) or a JWT.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def caller(scope: str) -> Callable[..., Principal]:
    """A dependency: the authenticated, rate-limited caller holding ``scope``."""

    async def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
                   api_key: Annotated[str | None, Depends(api_key_header)] = None) -> Principal:
        authorization = f"Bearer {credentials.credentials}" if credentials else request.headers.get("authorization")
        principal = request.app.state.auth.authenticate(
            authorization, api_key, request.headers.get("x-ragline-tenant"))
        principal.require(scope)
        tenant_var.set(principal.tenant)  # for this request's log lines
        wait = await request.app.state.limiter.acquire(principal.subject)
        if wait:
            raise RateLimited(wait)
        return principal

    return dependency


QueryCaller = Annotated[Principal, Depends(caller("query"))]
IngestCaller = Annotated[Principal, Depends(caller("ingest"))]
