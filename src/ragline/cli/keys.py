"""API keys: create, list, revoke."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ragline.core.errors import RaglineError

if TYPE_CHECKING:
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    Settings = Lazy("ragline.settings", "Settings")


from ragline.cli._shared import ConfigOption, app, err, out

keys_app = typer.Typer(help="Manage API keys (stored as hashes in the keys file).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keystore(config: Path | None):
    from ragline.service.api.auth import KeyStore

    return KeyStore(Path(Settings.load(config).keys_file))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant the key acts for.")] = "default",
    scopes: Annotated[str, typer.Option(help="Comma-separated: query, ingest, admin.")] = "query",
    name: Annotated[str, typer.Option(help="A label for humans.")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    try:
        key, record = _keystore(config).create(tenant, [s.strip() for s in scopes.split(",") if s.strip()], name)
    except (RaglineError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    err.print(f"created key {record.id} for tenant {record.tenant!r}, scopes {', '.join(record.scopes)}")
    out.print(key, highlight=False)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """Key ids, tenants, scopes and status (never the keys)."""
    table = Table("id", "tenant", "scopes", "name", "created", "status")
    for r in _keystore(config).list():
        table.add_row(r.id, r.tenant, ",".join(r.scopes), r.name, r.created_at, "revoked" if r.revoked else "active")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (see `ragline keys list`).")], config: ConfigOption = None
) -> None:
    """Revoke a key; running servers refuse it at once."""
    try:
        _keystore(config).revoke(key_id)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    out.print(f"revoked {key_id}")
