"""The command line: a thin layer over the engine. Settings are read here, once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import ConfigurationError, DocumentError, RaglineError, Unauthorized
from .errors import NotFound as NotFoundError
from .samples import SAMPLE_TENANT

if TYPE_CHECKING:
    from .client import Client
    from .engine import Engine
    from .ingest.loaders import iter_files, load_file
    from .models import Answer, Document, IngestReport
    from .samples import sample_files
    from .settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/lazy.py)
    from .lazy import Lazy

    Client = Lazy("ragline.client", "Client")
    Engine = Lazy("ragline.engine", "Engine")
    iter_files = Lazy("ragline.ingest.loaders", "iter_files")
    load_file = Lazy("ragline.ingest.loaders", "load_file")
    IngestReport = Lazy("ragline.models", "IngestReport")
    sample_files = Lazy("ragline.samples", "sample_files")
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
        from . import __version__

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


def _remote(config: Path | None, url: str | None, api_key: str | None, tenant: str | None) -> Client | None:
    """The server this command goes to: ``--url``, or the live server that owns the local
    database (found through its owner record); None to open the database in this process.
    A database held by a process that is not a server fails at once, naming it."""
    from .registry import scheme_of
    from .stores import ownership

    if url:
        return Client(url, api_key, tenant=tenant)
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
        return Client(owner["url"], owner["token"], tenant=tenant)
    err.print(
        f"[red]error:[/] the database {database} is in use by {ownership.describe(owner)}; wait for it "
        "to finish or stop it (a Milvus Lite file has one owner at a time)"
    )
    raise typer.Exit(2)


def _say_if_new_database(settings: Settings) -> None:
    """A local command about to create the embedded database says so, and where: run from
    another folder, it would otherwise answer from a new, empty one without a word."""
    from .registry import scheme_of

    if scheme_of(settings.milvus_uri) != "file":
        return
    database = Path(settings.milvus_uri).expanduser().absolute()
    if not database.exists():
        err.print(
            f"[yellow]note:[/] no database at {database}: a new, empty one is made there (the default is "
            ".ragline/milvus.db in the current folder; RAGLINE_MILVUS_URI or --config choose another)"
        )


def _through(client: Client, work: Callable[[Client], T]) -> T:
    """Run one operation against a server; its errors become a message and an exit status."""
    try:
        with client:
            return work(client)
    except Unauthorized as exc:
        err.print(f"[red]error:[/] {exc}; pass --api-key (or set RAGLINE_API_KEY) for {client.url}")
        raise typer.Exit(1) from None
    except RaglineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


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


IdPrefixOption = Annotated[
    str,
    typer.Option(
        "--id-prefix",
        help="Put this before every document id (ids are paths relative to the directory given, or the file's name).",
    ),
]


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories (.txt .md .html .pdf .docx .pptx .xlsx .csv .json .eml)."),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Ingest the bundled sample corpus (into the tenant 'sample').")
    ] = False,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Also ingest symbolic links that lead out of a directory.")
    ] = False,
    id_prefix: IdPrefixOption = "",
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Ingest documents: re-running is safe, unchanged chunks are skipped."""
    if sample and paths:
        err.print("[red]error:[/] --sample ingests the sample corpus alone (into its own tenant); give no PATH with it")
        raise typer.Exit(2)
    targets = list(paths or []) + (sample_files() if sample else [])
    if not targets:
        err.print("[red]error:[/] give at least one PATH, or --sample")
        raise typer.Exit(2)
    if sample:
        tenant = SAMPLE_TENANT
    if not id_prefix.isprintable():
        err.print("[red]error:[/] --id-prefix must be printable text")
        raise typer.Exit(2)
    files = [item[0] for item in iter_files(targets, follow_symlinks) if isinstance(item, tuple)]
    client = _remote(config, url, api_key, tenant)
    if sample and client is not None:
        _sample_tenant_only(client)
    so_far = IngestReport()

    def interrupted(name: str) -> str:
        return (
            f"interrupted ({name}): {so_far.documents} documents written before it ({so_far.chunks_written} "
            f"chunks written, {so_far.chunks_unchanged} unchanged); run the same command again to finish: "
            "what is written is skipped"
        )

    with _IngestProgress(files, disable=as_json) as progress:
        if client is not None:
            from .remote_ingest import RemoteIngest

            max_bytes = int(Settings.load(config).max_document_mb * 1_000_000)
            remote = RemoteIngest(client, max_bytes, progress.file, progress.chunks, so_far)
            previous = signal.signal(signal.SIGTERM, _raise_interrupted)
            try:
                report = _through(client, lambda c: remote.run(targets, follow_symlinks, id_prefix))
            except (Interrupted, KeyboardInterrupt) as exc:
                progress.stop()
                stopped = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT")
                err.print(f"[yellow]{remote.interrupted(stopped.signal_name)}[/]")
                raise typer.Exit(stopped.exit_code) from None
            finally:
                signal.signal(signal.SIGTERM, previous)
        else:
            report = _run(
                config,
                lambda engine: engine.ingest_paths(
                    targets,
                    tenant,
                    on_file=progress.file,
                    follow_symlinks=follow_symlinks,
                    id_prefix=id_prefix,
                    progress=progress.chunks,
                    into=so_far,
                ),
                on_interrupt=interrupted,
            )
    if as_json:
        _print_json(report.model_dump_json())
    else:
        for message in report.errors[:_SHOWN_ERRORS]:
            err.print(f"[yellow]skipped[/] {escape(message)}")
        if len(report.errors) > _SHOWN_ERRORS:
            err.print(f"[yellow]... and {len(report.errors) - _SHOWN_ERRORS} more skipped[/] (--json lists them all)")
        out.print(
            f"{report.documents} documents ({report.unchanged_documents} unchanged): "
            f"{report.chunks_written} chunks written, {report.chunks_unchanged} unchanged, "
            f"{report.chunks_deleted} deleted, in {report.seconds:.1f}s"
        )
    if not report.documents:
        err.print(
            "[red]nothing was ingested[/]" + (": every file was skipped" if report.errors else ": no files found")
        )
        raise typer.Exit(1)


_SHOWN_ERRORS = 20


def _sample_tenant_only(client: Client) -> None:
    """The sample corpus goes into its own tenant, never the user's: through a server, an
    API key's tenant wins over --tenant, so check which tenant the writes would land in."""
    try:
        landing = client.stats()["tenant"]
    except RaglineError as exc:
        landing = f"unknown ({exc})"
    if landing != SAMPLE_TENANT:
        client.close()
        err.print(
            f"[red]error:[/] through {client.url} the sample corpus would go into the tenant {landing!r}, "
            f"not {SAMPLE_TENANT!r}: use an API key of the tenant {SAMPLE_TENANT!r} (ragline keys create "
            f"--tenant {SAMPLE_TENANT} --scopes query,ingest)"
        )
        raise typer.Exit(2)


class _IngestProgress:
    """The ingest progress bar, in chunks written (or found unchanged) out of an estimate
    that sharpens as files are read (chunks per byte so far times the bytes left), with
    the rate and the time left."""

    def __init__(self, files: list[Path], disable: bool) -> None:
        self.sizes = {str(f): _size_of(f) for f in files}
        self.bytes_total = sum(self.sizes.values()) or 1
        self.bytes_read = 0
        self.known = 0  # chunks planned or found unchanged
        self.done = 0  # chunks written or found unchanged
        self.started = time.monotonic()
        self.bar = Progress(
            TextColumn("[bold]ingesting"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} chunks"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[file]}"),
            console=err,
            transient=True,
            disable=disable,
        )
        self.task = self.bar.add_task("ingest", total=max(1, self.bytes_total // 900), file="", rate="")
        self.lines = not disable and not err.is_terminal

    def __enter__(self) -> _IngestProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def stop(self) -> None:
        self.bar.stop()

    def file(self, name: str) -> None:
        self.bytes_read += self.sizes.get(name, 0)
        self._show(file=Path(name).name)

    def chunks(self, kind: str, n: int) -> None:
        if kind in ("planned", "unchanged"):
            self.known += n
        if kind in ("written", "unchanged"):
            self.done += n
        self._show()
        if kind == "written" and self.lines:  # no live bar (a log, a pipe): a line per group written
            task = self.bar.tasks[0]
            left = f", about {task.time_remaining:.0f}s left" if task.time_remaining else ""
            err.print(f"ingest: {self.done} of about {task.total:.0f} chunks written or unchanged{left}")

    def _show(self, **fields: Any) -> None:
        per_byte = self.known / self.bytes_read if self.known and self.bytes_read else 1 / 900
        estimate = self.known + max(0, self.bytes_total - self.bytes_read) * per_byte
        rate = self.done / max(1e-3, time.monotonic() - self.started)
        self.bar.update(
            self.task, completed=self.done, total=max(estimate, self.done, 1), rate=f"{rate:.0f}/s", **fields
        )


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@app.command()
def watch(
    folders: Annotated[list[Path], typer.Argument(help="Folders to keep the index in step with.")],
    id_prefix: IdPrefixOption = "",
    tenant: TenantOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics (freshness) on this port.")
    ] = None,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Also index symbolic links that lead out of the folders.")
    ] = False,
) -> None:
    """Keep the index in step with folders: created, changed, renamed and deleted files."""
    from .watching import ClientSink, EngineSink, Watcher

    for folder in folders:
        if not folder.is_dir():
            err.print(f"[red]error:[/] {folder} is not a folder")
            raise typer.Exit(2)
    settings = Settings.load(config)
    max_bytes = int(settings.max_document_mb * 1_000_000)

    def said(what: str, name: str, seconds: float | None) -> None:
        after = f" ({seconds:.2f}s after the change)" if seconds is not None else ""
        style = {"updated": "green", "deleted": "yellow"}.get(what, "dim")
        err.print(f"[{style}]{what}[/] {escape(name)}{after}")

    async def follow(sink: Any, tenant_name: str) -> None:
        watcher = Watcher(
            sink, folders, tenant_name, max_bytes, id_prefix, report=said, follow_symlinks=follow_symlinks
        )
        written, deleted = await watcher.sync()
        ready = asyncio.Event()
        running = asyncio.create_task(watcher.run(ready=ready))
        await asyncio.wait([running, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        err.print(
            f"watching {', '.join(str(f) for f in folders)}: {written} files in step, {deleted} gone removed; "
            "Ctrl-C to stop"
        )
        await running

    client = _remote(config, url, api_key, tenant)
    if client is not None:
        client.close()
        from .client import AsyncClient

        async def remotely() -> None:
            async with AsyncClient(client.url, client.api_key, tenant=client.tenant) as c:
                await follow(ClientSink(c), tenant or settings.default_tenant)

        _main(remotely(), lambda name: f"stopped watching ({name})")
        return

    async def locally(engine: Engine) -> None:
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, registry=engine.metrics.registry)
        await follow(EngineSink(engine, tenant), engine.tenant(tenant))

    _run(config, locally, on_interrupt=lambda name: f"stopped watching ({name})")


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=100)] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Metadata filter KEY=VALUE.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="dense | bm25 | hybrid (default: settings).")] = None,
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Find the chunks that best match a question."""
    filters = _parse_filters(where or [])
    client = _remote(config, url, api_key, tenant)
    context: Any
    if client is not None:
        context = _through(client, lambda c: c.search(question, top_k, filters, mode))
    else:
        context = _run(config, lambda engine: engine.search(question, tenant, top_k, filters, mode))
    if as_json:
        _print_json(context.model_dump_json())
        return
    if context.notice:
        err.print(f"[yellow]note:[/] {context.notice}")
    if not context.hits:
        out.print("no matching chunks (is anything ingested for this tenant?)")
        return
    table = Table("#", "score", "document", "text", show_lines=True)
    for rank, hit in enumerate(context.hits, 1):
        text = hit.text if len(hit.text) <= 300 else hit.text[:300] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.document_id, text)
    out.print(table)


def _parse_filters(pairs: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/] --where wants KEY=VALUE, got {pair!r}")
            raise typer.Exit(2)
        filters[key] = value
    return filters


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=50)] = None,
    generator: Annotated[
        str | None, typer.Option("--generator", "-g", help="local | openai | extractive (default: settings).")
    ] = None,
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Answer a question from the documents, streaming, then list its sources."""
    streamed: list[str] = []

    def show(item: str | Answer, final: Answer | None) -> Answer | None:
        if isinstance(item, str):
            streamed.append(item)
            if not as_json:
                out.print(item, end="", soft_wrap=True, highlight=False, markup=False)
            return final
        return item

    async def work(engine: Engine) -> Answer | None:
        final = None
        async for item in engine.stream(question, tenant, top_k):
            final = show(item, final)
        return final

    def remotely(c: Client) -> Answer | None:
        final = None
        for item in c.stream(question, top_k):
            final = show(item, final)
        return final

    client = _remote(config, url, api_key, tenant)
    if client is not None:
        if generator:
            err.print("[yellow]note:[/] --generator is ignored: the server answers with its own generator")
        answer = _through(client, remotely)
    else:
        answer = _ask_locally(config, generator, work)
    if answer is None:
        err.print("[red]error:[/] the answer stream ended without an answer")
        raise typer.Exit(1)
    if as_json:
        _print_json(answer.model_dump_json())
        return
    out.print()
    if " ".join("".join(streamed).split()) != " ".join(answer.text.split()):
        # what streamed was not the answer (an LLM answer replaced as ungrounded): never
        # leave it on screen as if it were
        err.print("[yellow]replaced:[/] the text above was not supported by the sources; the answer is:")
        out.print(answer.text, soft_wrap=True, highlight=False, markup=False)
    if answer.degraded:
        err.print(f"[yellow]degraded:[/] {answer.degraded_reason}")
    if answer.short_answer:
        out.print(f"answer: {answer.short_answer}", markup=False, highlight=False)
    if answer.confidence is not None:
        err.print(f"[dim]confidence that the evidence answers the question: {answer.confidence:.2f}[/]")
    if answer.related:
        out.print("related passages that do not answer it:", markup=False, highlight=False)
    for citation in answer.citations or answer.related:
        page = f" (page {citation.page})" if citation.page is not None else ""
        out.print(f"  [{citation.number}] {citation.document_id}{page}", markup=False, highlight=False)
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in answer.timings_ms.items())
    err.print(f"[dim]{answer.model} · {timings}[/]")


def _ask_locally(
    config: Path | None, generator: str | None, work: Callable[[Engine], Awaitable[Answer | None]]
) -> Answer | None:
    if (generator or Settings.load(config).generator) == "local":
        err.print(
            "[yellow]note:[/] the local model is SmolLM2-135M: small enough for any CPU, too small to be "
            "reliable. Its answers are checked against the passages and replaced by extractive ones when "
            "unsupported. For fluent answers point ragline at vLLM: RAGLINE_GENERATOR=openai RAGLINE_LLM_URL=..."
        )
    return _run(config, work, generator=generator)


@app.command()
def delete(
    document_id: Annotated[str, typer.Argument(help="The document id (see `ragline search`).")],
    tenant: TenantOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a document and all its chunks."""
    client = _remote(config, url, api_key, tenant)
    if client is None:
        removed = _run(config, lambda engine: engine.delete_document(document_id, tenant))
        out.print(f"deleted {document_id}: {removed} chunks")
        return
    result = _through(client, lambda c: c.delete(document_id))
    if result.deleted_chunks is None:
        out.print(f"delete of {document_id} accepted: queued in order with the document's writes")
    else:
        out.print(f"deleted {document_id}: {result.deleted_chunks} chunks")


@app.command("ls")
def list_documents(
    prefix: Annotated[str, typer.Argument(help="Only ids that start with this.")] = "",
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (in id order).")] = 1000,
    where: Annotated[list[str] | None, typer.Option("--where", help="Metadata filter KEY=VALUE.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List the documents that are indexed: id, chunks, content hash, metadata."""
    filters = _parse_filters(where or [])

    def remotely(c: Client) -> list[dict[str, Any]]:
        listed = []
        for doc in c.documents(prefix, page_size=min(limit, 1000), where=filters):
            listed.append(doc.model_dump())
            if len(listed) == limit:
                break
        return listed

    async def every(engine: Engine) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = []
        after = ""
        while len(listed) < limit:
            page, after_next = await engine.list_documents(
                tenant, prefix, after, min(1000, limit - len(listed)), filters
            )
            listed += page
            if after_next is None:
                break
            after = after_next
        return listed

    client = _remote(config, url, api_key, tenant)
    documents = _through(client, remotely) if client is not None else _run(config, every)
    if as_json:
        _print_json(json.dumps(documents))
        return
    for doc in documents:
        meta = json.dumps(doc["metadata"], ensure_ascii=False) if doc["metadata"] else ""
        updated = (doc.get("updated_at") or "-")[:19].replace("T", " ")
        out.print(f"{doc['id']}\t{doc['chunks']} chunks\t{doc['content_hash'][:12]}\t{updated}\t{meta}", markup=False)
    out.print(f"{len(documents)} documents", style="dim")


@app.command()
def stats(
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """How many chunks the tenant has, and where they live."""
    client = _remote(config, url, api_key, tenant)
    if client is not None:
        result = {**_through(client, lambda c: c.stats()), "server": client.url}
    else:
        result = _run(config, lambda engine: engine.stats(tenant))
    if as_json:
        _print_json(json.dumps(result))
    else:
        for key, value in result.items():
            out.print(f"{key:>12}: {value}")


@app.command("eval")
def evaluate(
    dataset_dir: Annotated[Path, typer.Argument(help="A BEIR dataset: corpus.jsonl, queries.jsonl, qrels/test.tsv.")],
    mode: Annotated[str, typer.Option("--mode", help="dense, bm25, hybrid, or several comma-separated.")] = "hybrid",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results as JSON here.")] = None,
    config: ConfigOption = None,
) -> None:
    """Measure retrieval on a BEIR dataset (nDCG@10, Recall@10/100, MRR@10) in a fresh collection."""
    import statistics
    import tempfile

    from . import evaluation

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if not modes or set(modes) - {"dense", "bm25", "hybrid"}:
        err.print(f"[red]error:[/] --mode takes dense, bm25, hybrid (comma-separated), not {mode!r}")
        raise typer.Exit(2)
    try:
        dataset = evaluation.load_beir(dataset_dir)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    total = sum(1 for _ in dataset.corpus.open())
    results: dict[str, dict[str, Any]] = {}

    async def work(engine: Engine):
        with Progress(
            TextColumn("[bold]ingesting corpus"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("ingest", total=total)
            started = time.perf_counter()
            chunks = await evaluation.ingest(engine, dataset, lambda n: progress.update(task, advance=n))
            ingest_s = time.perf_counter() - started
        for m in modes:
            run, latencies = await evaluation.run_queries(engine, dataset, m)
            results[m] = {**evaluation.score(dataset.qrels, run), "search_p50_ms": statistics.median(latencies)}
        return chunks, ingest_s

    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {
            "milvus_uri": str(Path(tmp) / "eval.db"),
            "collection": "eval",
            "cache_url": "none",
        }
        chunks, ingest_s = _run(config, work, **overrides)
    table = Table(
        "mode", *evaluation.MEASURES, "search p50 ms", title=f"{dataset.name}: {len(dataset.queries)} queries"
    )
    for m, r in results.items():
        table.add_row(m, *(f"{r[k]:.4f}" for k in evaluation.MEASURES), f"{r['search_p50_ms']:.1f}")
    err.print(table)
    summary = {
        "dataset": dataset.name,
        "queries": len(dataset.queries),
        "documents": total,
        "chunks": chunks,
        "ingest_s": round(ingest_s, 1),
        "mode": modes[0],
        **results[modes[0]],
        "modes": results,
    }
    if output:
        output.write_text(json.dumps(summary, indent=2))
    out.print(json.dumps(summary), highlight=False, soft_wrap=True)


@app.command()
def bench(
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset: ingest, search, generate, answers, "
            "serve, cache, pipeline, workers, gateway (default: all)."
        ),
    ] = None,
    results_dir: Annotated[Path, typer.Option("--results", help="Where to write the report.")] = Path("results"),
) -> None:
    """Run the benchmarks in bench/ and write results.json, summary.md and PNG plots."""
    from . import benchmarks

    names = [n.strip() for n in only.split(",")] if only else list(benchmarks.ALL)
    unknown = set(names) - set(benchmarks.ALL)
    if unknown:
        err.print(f"[red]error:[/] unknown benchmarks: {', '.join(sorted(unknown))}")
        raise typer.Exit(2)
    results = {}
    for name in names:
        err.print(f"running bench/{name}.py ...")
        results[name] = benchmarks.run_one(name)
        err.print(f"  {json.dumps(results[name])[:300]}")
    for path in benchmarks.write_report(results, results_dir):
        out.print(f"wrote {path}")
    if any("error" in r for r in results.values()):
        raise typer.Exit(1)


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
    from .api import server
    from .api.app import create_app

    try:
        settings = Settings.load(
            config, host=host, port=port, bus_url=bus, **({"auth_enabled": False} if no_auth else {})
        )
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    from .observability import configure_logging, setup_tracing

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
    from .registry import scheme_of
    from .stores import ownership

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
    from .api.auth import KeyStore

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
    from .api.auth import KeyStore

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


BusOption = Annotated[
    str | None,
    typer.Option("--bus", help="kafka://HOST:PORT[,HOST:PORT] or memory (default: settings, RAGLINE_BUS_URL)."),
]


def _bus_settings(config: Path | None, bus: str | None, **overrides: Any) -> Settings:
    try:
        settings = Settings.load(config, bus_url=bus, **overrides)
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    if not settings.bus_url:
        err.print("[red]configuration error:[/] no bus: pass --bus kafka://HOST:PORT (or set RAGLINE_BUS_URL)")
        raise typer.Exit(2)
    return settings


def _run_bus(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from .buses import build_bus

    async def main() -> T:
        bus = build_bus(settings)
        try:
            return await work(bus)
        finally:
            await bus.close()

    return _main(main())


topics_app = typer.Typer(help="The pipeline's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create(bus: BusOption = None, config: ConfigOption = None) -> None:
    """Create the missing topics with partitions, replication and retention from settings."""
    from .buses import topic_specs

    settings = _bus_settings(config, bus)
    specs = topic_specs(settings)
    if settings.bus_url == "memory":
        err.print("the in-process bus needs no topics")
        return
    created = _run_bus(settings, lambda b: b.create_topics(specs))
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        out.print(
            f"{spec.name}: {state} (partitions {spec.partitions}, replication {spec.replication_factor}, "
            f"retention {int(spec.config['retention.ms']) / 3_600_000:g} h)",
            highlight=False,
        )


@app.command()
def worker(
    stages: Annotated[
        list[str],
        typer.Argument(
            help="ingest, retrieve and/or generate (several in one process "
            "is fine; Milvus Lite allows only one process)."
        ),
    ],
    bus: BusOption = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Messages in hand at once per stage.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port for /metrics, /healthz, /readyz (0: none; default: settings, 9464).")
    ] = None,
    group_prefix: Annotated[str, typer.Option(help="Consumer groups are PREFIX-STAGE.")] = "ragline",
    config: ConfigOption = None,
) -> None:
    """Run pipeline stages in consumer groups; run more of them to scale out."""
    from .observability import configure_logging, setup_tracing
    from .worker_process import run_workers

    settings = _bus_settings(config, bus, worker_concurrency=concurrency, worker_metrics_port=metrics_port)
    configure_logging(settings.log_level, settings.log_format)
    setup_tracing(f"{settings.service_name}-worker-{'-'.join(stages)}", settings.otlp_endpoint)
    _main(run_workers(settings, stages, group_prefix))


@app.command()
def publish(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to publish to the docs topic.")],
    id_prefix: IdPrefixOption = "",
    tenant: TenantOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
) -> None:
    """Publish documents to the ingestion topic (streaming ingestion by the ingest workers)."""
    settings = _bus_settings(config, bus)
    docs: list[Document] = []
    for item in iter_files(paths, id_prefix=id_prefix):
        try:
            if isinstance(item, DocumentError):
                raise item
            docs.append(
                load_file(
                    item[0],
                    tenant or settings.default_tenant,
                    int(settings.max_document_mb * 1_000_000),
                    document_id=item[1],
                )
            )
        except DocumentError as exc:
            err.print(f"[yellow]skipped:[/] {exc}")

    async def work(b) -> None:
        await asyncio.gather(
            *(b.publish(settings.topic_docs, d.model_dump_json().encode(), f"{d.tenant}/{d.id}".encode()) for d in docs)
        )

    _run_bus(settings, work)
    out.print(f"published {len(docs)} documents to {settings.topic_docs}")


dlq_app = typer.Typer(help="Dead letters: messages a stage gave up on.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Also letters already replayed.")] = False,
    idle: Annotated[float, typer.Option(help="Stop reading after this many idle seconds.")] = 3.0,
    bus: BusOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters (oldest first)."""
    from .workers import dead_letters

    settings = _bus_settings(config, bus)
    letters = _run_bus(settings, lambda b: dead_letters(b, settings.topic_dlq, idle_s=idle, include_replayed=all_))
    if as_json:
        _print_json(json.dumps([lt.model_dump(mode="json") for lt in letters]))
        return
    table = Table("id", "stage", "from topic", "kind", "attempts", "last failure", "error")
    for lt in letters:
        table.add_row(
            lt.id,
            lt.stage,
            lt.topic,
            lt.error_kind,
            str(lt.attempts),
            lt.last_failure_at.strftime("%Y-%m-%d %H:%M:%S"),
            lt.error[:80],
        )
    out.print(table)
    err.print(f"{len(letters)} dead letters")


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Option("--id", help="Replay only these letters (repeatable).")] = None,
    idle: Annotated[float, typer.Option(help="Stop reading after this many idle seconds.")] = 3.0,
    bus: BusOption = None,
    config: ConfigOption = None,
) -> None:
    """Send dead letters back to the topics they came from (all not yet replayed, or --id ones)."""
    from .workers import dead_letters, replay

    settings = _bus_settings(config, bus)

    async def work(b) -> int:
        letters = await dead_letters(b, settings.topic_dlq, idle_s=idle, include_replayed=bool(ids))
        if ids:
            missing = set(ids) - {lt.id for lt in letters}
            if missing:
                raise NotFoundError(f"no dead letter with id {', '.join(sorted(missing))}")
            letters = [lt for lt in letters if lt.id in set(ids)]
        return await replay(b, letters, settings.topic_dlq)

    out.print(f"replayed {_run_bus(settings, work)} dead letters")


keys_app = typer.Typer(help="Manage API keys (stored as hashes in the keys file).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keystore(config: Path | None):
    from .api.auth import KeyStore

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


stack_app = typer.Typer(
    help="The scale-out topology on this machine under a supervisor: broker, Milvus server, Redis, "
    "LLM server, workers, two API replicas behind a balancer.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
StackDir = Annotated[Path, typer.Option("--dir", help="Where the stack keeps its state and logs.")]


@stack_app.command("up")
def stack_up(
    directory: StackDir = Path(".ragline/stack"),
    port: Annotated[int, typer.Option(help="The balancer's port; the other servers use the next ones.")] = 18080,
    workers: Annotated[int, typer.Option(min=1, help="Workers per stage.")] = 2,
    milvus_uri: Annotated[
        str | None, typer.Option(help="Use this Milvus server instead of starting one (http://host:19530).")
    ] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Extractive answers: no LLM server.")] = False,
) -> None:
    """Start the stack (supervised: whatever dies is restarted) and wait until it is ready."""
    from .stack import Stack

    stack = Stack(directory.resolve(), port, workers, milvus_uri=milvus_uri, llm=not no_llm)
    err.print(f"starting the stack in {stack.directory} (logs in {stack.directory / 'logs'}) ...")
    try:
        stack.up()
    except (ConfigurationError, TimeoutError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    out.print(stack.status())
    err.print(f"ready: {stack.url}/ (no authentication: loopback only). `ragline stack down` stops it.")


@stack_app.command("status")
def stack_status(directory: StackDir = Path(".ragline/stack")) -> None:
    """Each supervised process: running, restarting or stopped, with its pid and uptime."""
    from .stack import Stack

    stack = Stack(directory.resolve())
    if not stack.running():
        err.print(f"no stack runs from {stack.directory}")
        raise typer.Exit(1)
    out.print(stack.status())


@stack_app.command("down")
def stack_down(directory: StackDir = Path(".ragline/stack")) -> None:
    """Stop every process of the stack."""
    from .stack import Stack

    Stack(directory.resolve()).down()
    err.print("stack stopped")


@app.command("lb", hidden=True)
def load_balancer(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")],
    backend: Annotated[list[str], typer.Option(help="host:port of an API replica (repeat).")],
) -> None:
    """A TCP round-robin balancer over API replicas (the local stack's Service)."""
    from .lb import Balancer
    from .observability import configure_logging

    configure_logging("INFO", "json")
    backends = [(b.rpartition(":")[0], int(b.rpartition(":")[2])) for b in backend]
    _main(Balancer(backends).serve("127.0.0.1", port))


@app.command("llm-server", hidden=True)
def llm_server(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")],
    parallel: Annotated[int, typer.Option(min=1, help="Request slots.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads.")] = 1,
) -> None:
    """SmolLM2 behind llama.cpp's OpenAI-compatible server (the local stand-in for vLLM)."""
    import time as _time

    from .generators.local import serve_http

    server = serve_http(port, threads=threads, parallel=parallel)
    err.print(f"LLM server on {server.listening_address}")
    while True:
        _time.sleep(3600)


if __name__ == "__main__":
    app()
