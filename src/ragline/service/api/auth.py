"""Who is calling: API keys (stored only as hashes) and JWT bearer tokens.

An API key looks like ``rl_<key id>_<secret>``. The key file keeps, per key id, the
sha256 of the secret (a random 256-bit secret needs no slow hash), the tenant, the
scopes and whether it is revoked; it is re-read when it changes, so
``ragline keys create|revoke`` takes effect without a restart.

JWTs are verified with an HS256 secret or an RS256 public key; expiry (required),
audience and issuer are checked; the tenant and scopes come from claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ragline.core.errors import ConfigurationError, DependencyUnavailable, Forbidden, NotFound, Unauthorized
from ragline.core.models import validate_tenant

SCOPES = ("query", "ingest", "admin")
_PREFIX = "rl_"
_OWNER_PREFIX = "rlo_"


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    subject: str  # key id, JWT subject, or "anonymous"

    @property
    def bucket(self) -> str:
        """The rate-limit bucket: per tenant and subject (JWTs without ``sub`` share none across tenants)."""
        return f"{self.tenant}/{self.subject}"

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"this credential lacks the {scope!r} scope")


@dataclass
class KeyRecord:
    id: str
    secret_sha256: str
    tenant: str
    scopes: list[str]
    name: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    revoked: bool = False


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in a JSON file: hashes only, never the keys themselves.

    Changes (create, revoke) hold an exclusive lock on ``<file>.lock`` while they read,
    modify and atomically replace the file (a unique temporary file, fsynced, then
    renamed), so concurrent ``ragline keys`` commands neither corrupt the file nor undo
    each other. Readers never see a half-written file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int, int] | None = None

    def create(self, tenant: str, scopes: list[str], name: str = "") -> tuple[str, KeyRecord]:
        """A new key: the full key is returned once and stored nowhere."""
        validate_tenant(tenant)
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ConfigurationError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = KeyRecord(key_id, _digest(secret), tenant, sorted(set(scopes)), name)
        with self._changing():
            self._records[key_id] = record
        return f"{_PREFIX}{key_id}_{secret}", record

    def revoke(self, key_id: str) -> None:
        with self._changing():
            if key_id not in self._records:
                raise NotFound(f"no API key {key_id!r}")
            self._records[key_id].revoked = True

    def list(self) -> list[KeyRecord]:
        with self._lock:
            self._load()
            return list(self._records.values())

    def check(self) -> None:
        """ConfigurationError now (at start-up) if the file cannot be read."""
        try:
            self.list()
        except KeysUnreadable as exc:
            raise ConfigurationError(str(exc)) from None

    def verify(self, key: str) -> Principal:
        key_id, _, secret = key.removeprefix(_PREFIX).partition("_")
        with self._lock:
            self._load()
            record = self._records.get(key_id)
        if (
            not key.startswith(_PREFIX)
            or record is None
            or not hmac.compare_digest(record.secret_sha256, _digest(secret))
        ):
            raise Unauthorized("invalid API key")
        if record.revoked:
            raise Unauthorized("this API key has been revoked")
        return Principal(record.tenant, frozenset(record.scopes), f"key:{record.id}")

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Read, change and write the file under the cross-process lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            os.chmod(lock.name, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._stamp = None
                self._load()
                yield
                self._save()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_text())
                records = {r["id"]: KeyRecord(**r) for r in data.get("keys", [])}
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise KeysUnreadable(
                    f"the API keys file {self.path.name} is corrupt ({type(exc).__name__}); "
                    "restore it from a backup or recreate the keys"
                ) from None
            self._records, self._stamp = records, stamp

    def _save(self) -> None:
        body = json.dumps({"keys": [asdict(r) for r in self._records.values()]}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:  # mkstemp makes it 0600
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._stamp = None


class KeysUnreadable(DependencyUnavailable):
    """The keys file cannot be parsed: a 503 for requests, a configuration error at start-up."""


@dataclass(frozen=True)
class JWTConfig:
    secret: str | None = None  # HS256
    public_key: str | None = None  # RS256, PEM
    audience: str | None = None
    issuer: str | None = None
    tenant_claim: str = "tenant"

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)


def verify_jwt(token: str, config: JWTConfig) -> Principal:
    import jwt

    if not config.enabled:
        raise Unauthorized("JWT bearer tokens are not accepted here (no JWT key configured)")
    key, algorithm = (config.public_key, "RS256") if config.public_key else (config.secret or "", "HS256")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp"], "verify_aud": config.audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    tenant = claims.get(config.tenant_claim)
    if not isinstance(tenant, str):
        raise Unauthorized(f"the token has no {config.tenant_claim!r} claim")
    try:
        validate_tenant(tenant)
    except ValueError as exc:
        raise Unauthorized(str(exc)) from exc
    scopes = claims.get("scopes", claims.get("scope", ""))
    if isinstance(scopes, str):
        scopes = scopes.split()
    elif not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise Unauthorized("the token's scopes: a space-separated string (scope) or a list of strings (scopes)")
    return Principal(tenant, frozenset(scopes), f"jwt:{claims.get('sub', '?')}")


class Authenticator:
    """Turns request credentials into a Principal, or raises Unauthorized."""

    def __init__(
        self, keys: KeyStore, jwt_config: JWTConfig, enabled: bool = True, default_tenant: str = "default"
    ) -> None:
        self.keys = keys
        self.jwt = jwt_config
        self.enabled = enabled
        self.default_tenant = default_tenant
        # The owner's token: written only into the database's 0600 owner record (see
        # stores/ownership.py) for the CLI of the user who owns the data; loopback only.
        self.owner_token = _OWNER_PREFIX + secrets.token_urlsafe(32)

    def authenticate(
        self, authorization: str | None, api_key: str | None, tenant_header: str | None, loopback: bool = False
    ) -> Principal:
        if not self.enabled:
            return Principal(self._chosen(tenant_header), frozenset(SCOPES), "anonymous")
        token = api_key
        if not token and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("use 'Authorization: Bearer <API key or JWT>' or an X-API-Key header")
        if not token:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <API key or JWT>'")
        token = token.strip()
        if token.startswith(_OWNER_PREFIX):
            if not (loopback and hmac.compare_digest(token, self.owner_token)):
                raise Unauthorized("invalid owner token (it is accepted only from this machine)")
            return Principal(self._chosen(tenant_header), frozenset(SCOPES), "owner")
        return self.keys.verify(token) if token.startswith(_PREFIX) else verify_jwt(token, self.jwt)

    def _chosen(self, tenant_header: str | None) -> str:
        """The tenant a caller allowed to choose one asked for (X-Ragline-Tenant)."""
        tenant = tenant_header or self.default_tenant
        try:
            validate_tenant(tenant)
        except ValueError as exc:
            raise Unauthorized(str(exc)) from exc
        return tenant
