"""`ragline serve`, and the keys and owner checks a first start needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragline.core.errors import ConfigurationError
from ragline.service.samples import SAMPLE_TENANT

if TYPE_CHECKING:
    from ragline.service.samples import sample_files
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    sample_files = Lazy("ragline.service.samples", "sample_files")
    Settings = Lazy("ragline.settings", "Settings")


from ragline.cli._shared import ConfigOption, _run, app, err


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: settings, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings, 8080).")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Turn authentication OFF (local development only).")
    ] = False,
    sample: Annotated[bool, typer.Option("--sample", help="Ingest the bundled sample corpus first.")] = False,
    bus: Annotated[
        str | None,
        typer.Option(
            "--bus",
            help="Answer queries through the pipeline: kafka://HOST:PORT (workers run apart) or memory "
            "(workers in this process). Default: settings (none: stages called directly).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the HTTP API and chat page on embedded defaults."""
    from ragline.service.api import server
    from ragline.service.api.app import create_app

    try:
        settings = Settings.load(
            config, host=host, port=port, bus_url=bus, **({"auth_enabled": False} if no_auth else {})
        )
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    from ragline.service.observability import configure_logging, setup_tracing

    configure_logging(settings.log_level, settings.log_format)
    setup_tracing(f"{settings.service_name}-api", settings.otlp_endpoint)
    _refuse_if_owned(settings)
    if sample:
        _run(config, lambda engine: engine.ingest_paths(sample_files(), SAMPLE_TENANT))
    if not settings.auth_enabled:
        err.print(
            "[bold red]WARNING: authentication is OFF. Anyone who can reach this port can read, "
            "write and delete every tenant's documents. Use only for local development.[/]"
        )
        if sample:
            err.print(f"The sample corpus is in the tenant {SAMPLE_TENANT!r} (X-Ragline-Tenant: {SAMPLE_TENANT}).")
    else:
        _first_key(settings)
        if sample:
            _sample_key(settings)
    try:
        application = create_app(settings)
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    err.print(f"ragline serving on http://{settings.host}:{settings.port}/ (chat page), API under /v1, docs at /docs")
    server.run(application, settings)


def _refuse_if_owned(settings: Settings) -> None:
    """A second server on the same Milvus Lite file fails at once, naming the first."""
    from ragline.adapters.stores import ownership
    from ragline.core.registry import scheme_of

    if scheme_of(settings.milvus_uri) != "file" or settings.bus_url not in (None, "", "memory"):
        return
    database = Path(settings.milvus_uri).expanduser()
    owner = ownership.owner_of(database)
    if owner is not None:
        err.print(
            f"[red]error:[/] the database {database} is in use by {ownership.describe(owner)}; "
            "stop it first, or give this server another database (RAGLINE_MILVUS_URI)"
        )
        raise typer.Exit(2)


def _sample_key(settings: Settings) -> None:
    """A query-only key for the sample corpus' tenant, in a 0600 file next to the keys."""
    from ragline.service.api.auth import KeyStore

    path = Path(settings.keys_file).with_name("sample-key")
    keys = KeyStore(Path(settings.keys_file))
    try:
        have = path.exists() and any(r.tenant == SAMPLE_TENANT and not r.revoked for r in keys.list())
        if not have:
            key, _ = keys.create(SAMPLE_TENANT, ["query"], "sample corpus")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(key + "\n")
    except (ConfigurationError, OSError) as exc:
        err.print(f"[yellow]no key for the sample corpus ({exc}); create one: ragline keys create --tenant sample[/]")
        return
    err.print(f"The sample corpus is in the tenant {SAMPLE_TENANT!r}; a query key for it is in {path}.")


def _first_key(settings: Settings) -> None:
    """With no keys yet, create an admin key: into a 0600 file, and onto the terminal
    only when there is one (never into a log)."""
    from ragline.service.api.auth import KeyStore

    keys = KeyStore(Path(settings.keys_file))
    try:
        if keys.list():
            return
        key, record = keys.create(settings.default_tenant, ["query", "ingest", "admin"], "first key")
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:  # e.g. a read-only Secret mount: keys are managed outside
        err.print(
            f"[yellow]No API keys in {settings.keys_file} and it cannot be written ({exc}); "
            "every request will be refused until keys are added (`ragline keys create`).[/]"
        )
        return
    path = Path(settings.keys_file).with_name("first-admin-key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    where = f"It is in {path} (readable only by you)"
    if sys.stderr.isatty():
        err.print(
            f"[bold]No API keys yet; created one for tenant {record.tenant!r} (scopes query, ingest, admin). "
            f"{where}:[/]\n  {key}"
        )
    else:
        err.print(
            f"No API keys yet; created an admin key for tenant {record.tenant!r}. {where}; "
            "it is not printed because this output may be a log."
        )
