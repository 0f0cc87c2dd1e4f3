"""ASGI middleware: what every request goes through before a route sees it.

``Guard`` runs on the raw ASGI messages so that nothing heavy happens before the
caller is known: it authenticates from the headers, checks the scope the route needs
and the caller's rate limit, and only then lets the body be read, bounded per route
in size and in time. Failed authentications are counted per client address: past a
limit they get 429 instead of 401 (valid credentials from that address still pass).
In ``--no-auth`` mode only loopback Host and Origin headers pass (no DNS rebinding, no
cross-site form posts). Every response carries security headers.

``RequestContext`` gives each request an id for logs and the response, and counts
requests by route and status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from ragline.core.errors import RaglineError, RateLimited, TooLarge, Unauthorized
from ragline.service.api.problems import from_error, problem
from ragline.service.observability import log_context, tenant_var

Scope = dict[str, Any]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class GuardConfig:
    auth_enabled: bool
    query_body_bytes: int
    document_body_bytes: int
    body_timeout_s: float
    metrics_require_key: bool
    auth_failures_per_minute: int
    requests_per_tenant: int = 64


def required_scope(method: str, path: str, metrics_require_key: bool) -> str | None:
    """The scope a route needs, or None for the public ones (health, docs, chat page)."""
    if (path.startswith("/v1/documents") and method in ("POST", "PUT", "DELETE")) or path.startswith("/v1/ingestions"):
        return "ingest"
    if path.startswith("/v1/"):
        return "query"
    if path == "/metrics" and metrics_require_key:
        return "admin"
    return None


# BaseException, not Exception: the framework turns any Exception raised while it
# reads a body into a generic 400; these must reach the Guard to become 413 / 408.
class _BodyTooLarge(BaseException):
    pass


class _BodyTimeout(BaseException):
    pass


class FailedLogins:
    """Failed authentications per client address in a sliding minute; bounded memory."""

    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def wait_s(self, client: str) -> float:
        """0 if ``client`` may try to authenticate now, else seconds until it may."""
        recent = self._recent(client)
        return 0.0 if len(recent) < self.per_minute else 60.0 - (time.monotonic() - recent[0])

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())
        self._seen.move_to_end(client)
        while len(self._seen) > self.max_clients:
            self._seen.popitem(last=False)

    def _recent(self, client: str) -> list[float]:
        cutoff = time.monotonic() - 60.0
        recent = [t for t in self._seen.get(client, []) if t > cutoff]
        self._seen[client] = recent
        return recent


def _tenant_of(scope: Scope) -> str | None:
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "tenant", None)


class Guard:
    def __init__(self, app: Any, config: GuardConfig, authenticator: Any, limiter: Any) -> None:
        self.app = app
        self.config = config
        self.auth = authenticator
        self.limiter = limiter
        self.failures = FailedLogins(config.auth_failures_per_minute)
        self.in_flight: dict[str, int] = {}  # requests per tenant, from authentication to the end

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_security_headers(send)
        headers = Headers(scope=scope)
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
                refusal.headers["connection"] = "close"  # not worth receiving the unread body
            return await refusal(scope, receive, send)
        tenant = _tenant_of(scope)
        if tenant is not None:
            if self.in_flight.get(tenant, 0) >= self.config.requests_per_tenant:
                busy = from_error(RateLimited(1.0))
                busy.headers["connection"] = "close"
                return await busy(scope, receive, send)
            self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            if tenant is not None:
                self.in_flight[tenant] -= 1
                if not self.in_flight[tenant]:
                    del self.in_flight[tenant]

    async def _guarded(self, scope: Scope, receive: Any, send: Any) -> None:
        limit = self._body_limit(scope)
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._bounded(receive, limit), tracked_send)
        except (_BodyTooLarge, _BodyTimeout) as exc:
            if started:
                raise
            if isinstance(exc, _BodyTooLarge):
                response = from_error(TooLarge(_too_large(scope, limit)))
            else:
                response = problem(
                    408,
                    "Request Timeout",
                    f"the request body was not received within {self.config.body_timeout_s:g}s (http_body_timeout_s)",
                    {"Connection": "close"},
                )
            await response(scope, receive, send)

    async def _refusal(self, scope: Scope, headers: Headers) -> Any:
        """A response that ends the request now, or None to go on."""
        if not self.config.auth_enabled and not _loopback_only(headers):
            return problem(
                403,
                "Forbidden",
                "authentication is off (--no-auth), so only requests from this "
                "machine's loopback address (Host and Origin) are accepted",
            )
        limit = self._body_limit(scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return from_error(TooLarge(_too_large(scope, limit)))
        needed = required_scope(scope["method"], scope["path"], self.config.metrics_require_key)
        if needed is None:
            return None
        try:
            principal = await self._authenticate(scope, headers, needed)
        except RaglineError as exc:
            return from_error(exc)
        scope.setdefault("state", {})["principal"] = principal
        tenant_var.set(principal.tenant)  # for this request's log lines
        return None

    async def _authenticate(self, scope: Scope, headers: Headers, needed: str) -> Any:
        client = (scope.get("client") or ("unknown", 0))[0]
        try:
            principal = self.auth.authenticate(
                headers.get("authorization"),
                headers.get("x-api-key"),
                headers.get("x-ragline-tenant"),
                loopback=client in _LOOPBACK,
            )
        except Unauthorized:
            # Past its budget of failures a client gets 429 instead of 401: guessing slows
            # down, while valid credentials from the same address (a NAT, a proxy) still pass.
            wait = self.failures.wait_s(client)
            self.failures.failed(client)
            if wait > 0:
                raise RateLimited(wait) from None
            raise
        principal.require(needed)
        wait = await self.limiter.acquire(principal.bucket)
        if wait:
            raise RateLimited(wait)
        return principal

    def _body_limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"] in ("/v1/documents", "/v1/documents/files"):
            return self.config.document_body_bytes
        return self.config.query_body_bytes

    def _bounded(self, receive: Any, limit: int) -> Any:
        """``receive`` that counts body bytes and waits at most body_timeout_s for each piece."""
        seen = 0
        complete = False
        timeout_s = self.config.body_timeout_s

        async def bounded_receive() -> dict[str, Any]:
            nonlocal seen, complete
            if complete:  # e.g. a streaming response listening for the client to go away
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout_s)
            except TimeoutError:
                raise _BodyTimeout from None
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return bounded_receive


def _too_large(scope: Scope, limit: int) -> str:
    setting = "max_body_mb" if scope["path"].startswith("/v1/documents") else "max_query_body_kb"
    return f"request bodies on {scope['path']} are limited to {limit} bytes ({setting})"


def _loopback_only(headers: Headers) -> bool:
    """A loopback Host, and no Origin or this server's own (same host and port): a page of
    another local server (another port) must not read or write an unauthenticated index."""
    host = headers.get("host", "")
    if _hostname(f"//{host}") not in _LOOPBACK:
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    try:
        return urlsplit(origin).netloc.lower() == host.lower() and _hostname(origin) in _LOOPBACK
    except ValueError:
        return False


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _with_security_headers(send: Any) -> Any:
    async def secured(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return secured


class RequestContext:
    """Each request: an id (``X-Request-ID``, taken from the caller or made) in every
    log line and in the response; counted by route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
                if metrics is not None:
                    metrics.http_requests.labels(route=route, status=str(status)).inc()
