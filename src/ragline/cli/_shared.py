"""What every command group shares: the app, its consoles and options, and how a
command reaches a server or opens the database in this process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from ragline.core.errors import ConfigurationError, RaglineError, Unauthorized

if TYPE_CHECKING:
    from ragline.client import Client
    from ragline.core.models import Query
    from ragline.seam import Service
    from ragline.seam.local import LocalService
    from ragline.seam.remote import RemoteService
    from ragline.service.engine import Engine
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    Client = Lazy("ragline.client", "Client")
    Engine = Lazy("ragline.service.engine", "Engine")
    LocalService = Lazy("ragline.seam.local", "LocalService")
    RemoteService = Lazy("ragline.seam.remote", "RemoteService")
    Settings = Lazy("ragline.settings", "Settings")

# Model files come from installed packages; never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _quiet_types() -> None:
    """Help without type noise: typer 0.29 shows every parameter's type, ``<bool>`` beside
    a flag (nothing is typed after it) and ``<list[Path]>`` beside ``paths...`` (the dots
    already say several); those two go, the value types stay."""
    import typer.core

    for kind in (typer.core.TyperArgument, typer.core.TyperOption):
        original = kind.display_type_rich

        def display_type_rich(self: Any, ctx: Any, original: Any = original) -> str | None:
            shown: str | None = original(self, ctx)
            if shown is None or shown == "<bool>":  # a flag: nothing to type after it
                return None
            if shown.startswith("<list[") and shown.endswith("]>"):
                return f"<{shown[len('<list[') : -len(']>')].lower()}>"  # "paths..." already says several
            return shown

        kind.display_type_rich = display_type_rich  # type: ignore[method-assign]


_quiet_types()

app = typer.Typer(
    help="ragline: retrieval-augmented generation over your documents.", no_args_is_help=True, add_completion=False
)
out = Console(soft_wrap=True)  # piped output is never wrapped at 80 columns (lines stay whole for grep and cut)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _print_json(text: str) -> None:
    """JSON on stdout as is: rich would wrap long lines at the terminal's width, inside strings."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _version(value: bool) -> None:
    if value:
        from ragline import __version__

        out.print(f"ragline {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ragline: retrieval-augmented generation over your documents."""


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file.", envvar="RAGLINE_CONFIG")
]
TenantOption = Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant (default: settings).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Send the command to this ragline server (default: the server that owns the local database, if one runs).",
        envvar="RAGLINE_URL",
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", help="API key for --url.", envvar="RAGLINE_API_KEY", show_default=False)
]


def _endpoint(config: Path | None, url: str | None, api_key: str | None) -> tuple[str, str | None] | None:
    """The server this command goes to, as (URL, credential): ``--url``, or the live server that owns the local
    database (found through its owner record); None to open the database in this process.
    A database held by a process that is not a server fails at once, naming it."""
    from ragline.adapters.stores import ownership
    from ragline.core.registry import scheme_of

    if url:
        return url, api_key
    try:
        settings = Settings.load(config)
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    if scheme_of(settings.milvus_uri) != "file":
        return None
    database = Path(settings.milvus_uri).expanduser()
    owner = ownership.owner_of(database)
    if owner is None:
        return None
    distrust = ownership.trusted(database)
    if distrust is None and owner.get("url") and not ownership.loopback(str(owner["url"])):
        distrust = f"its owner record names {owner['url']}, not an address on this machine"
    if distrust is not None:
        err.print(
            f"[red]error:[/] the database {database} is held by another process and {distrust}: ragline will "
            "not send anything there. Use --url to choose a server, or another database path"
        )
        raise typer.Exit(2)
    if owner.get("url") and owner.get("token"):
        err.print(f"[dim]through the server that owns {database}: {owner['url']} (process {owner.get('pid')})[/]")
        # The owner's token only: the user's own API key is never sent to a URL read from a file.
        return str(owner["url"]), str(owner["token"])
    err.print(
        f"[red]error:[/] the database {database} is in use by {ownership.describe(owner)}; wait for it "
        "to finish or stop it (a Milvus Lite file has one owner at a time)"
    )
    raise typer.Exit(2)


def _say_if_new_database(settings: Settings) -> None:
    """A local command about to create the embedded database says so, and where: run from
    another folder, it would otherwise answer from a new, empty one without a word."""
    from ragline.core.registry import scheme_of

    if scheme_of(settings.milvus_uri) != "file":
        return
    database = Path(settings.milvus_uri).expanduser().absolute()
    if not database.exists():
        err.print(
            f"[yellow]note:[/] no database at {database}: a new, empty one is made there (the default is "
            ".ragline/milvus.db in the current folder; RAGLINE_MILVUS_URI or --config choose another)"
        )


def _run(
    config: Path | None,
    work: Callable[[Engine], Awaitable[T]],
    *,
    on_interrupt: Callable[[str], str] | None = None,
    **overrides: Any,
) -> T:
    """Build the engine from settings, run one operation, and turn errors into messages."""

    async def main() -> T:
        settings = Settings.load(config, **overrides)
        _say_if_new_database(settings)
        engine = Engine.from_settings(settings)
        try:
            return await work(engine)
        finally:
            await engine.close()

    return _main(main(), on_interrupt)


def _serve(
    config: Path | None,
    url: str | None,
    api_key: str | None,
    tenant: str | None,
    work: Callable[[Service, str], Awaitable[T]],
    *,
    on_interrupt: Callable[[str], str] | None = None,
    **overrides: Any,
) -> T:
    """Run one command over the seam: a server (``--url``, or the live owner of the local
    database) or the engine in this process, chosen here and nowhere else. ``work`` gets
    the service and the tenant to name (``--tenant``, else the settings' default; through
    a server an API key's own tenant wins). ``overrides``: settings for the engine in
    this process (a server keeps its own)."""
    endpoint = _endpoint(config, url, api_key)

    async def main() -> T:
        settings = Settings.load(config, **{k: v for k, v in overrides.items() if v is not None})
        service: Service
        if endpoint is None:
            _say_if_new_database(settings)
            service = LocalService(Engine.from_settings(settings))
        else:
            service = RemoteService(*endpoint, max_document_mb=settings.max_document_mb)
        try:
            return await work(service, tenant or settings.default_tenant)
        except Unauthorized as exc:
            if endpoint is None:
                raise
            err.print(f"[red]error:[/] {exc}; pass --api-key (or set RAGLINE_API_KEY) for {endpoint[0]}")
            raise typer.Exit(1) from None
        finally:
            await service.close()

    return _main(main(), on_interrupt)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the command."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130


def _main(coroutine: Coroutine[Any, Any, T], on_interrupt: Callable[[str], str] | None = None) -> T:
    """Run the command's coroutine; ragline's errors become a message and an exit status.
    Ctrl-C and SIGTERM cancel it: its ``finally`` blocks close what it opened (an
    embedding in progress stops after its current batch), then it exits 130 / 143 with
    ``on_interrupt(signal name)`` as the message."""
    received: list[str] = []

    async def guarded() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def stop(name: str) -> None:
            received.append(name)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig.name)
        return await coroutine

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        stopped = Interrupted(received[0] if received else "SIGINT")
        message = on_interrupt(stopped.signal_name) if on_interrupt else f"interrupted ({stopped.signal_name})"
        err.print(f"[yellow]{message}[/]")
        # What the command opened is closed (its finally blocks ran); an embedding thread
        # still finishing its batch would hold the exit for up to seconds, and its work
        # is abandoned anyway: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stopped.exit_code)
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    except RaglineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _query(
    text: str,
    tenant: str,
    top_k: int | None = None,
    filters: dict[str, Any] | None = None,
    mode: str | None = None,
    generator: str | None = None,
) -> Query:
    """A command's query; ``top_k`` left unset when not given, so whoever answers applies
    its own default (answers read fewer passages than searches list)."""
    from ragline.core.models import new_query

    top = {"top_k": top_k} if top_k else {}
    return new_query(text=text, tenant=tenant, filters=filters or {}, mode=mode, generator=generator, **top)


def _parse_filters(pairs: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/] --where wants KEY=VALUE, got {pair!r}")
            raise typer.Exit(2)
        filters[key] = value
    return filters
