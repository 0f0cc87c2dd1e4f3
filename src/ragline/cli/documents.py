"""Commands on documents: ingest, watch, delete, ls, stats."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ragline.core.errors import RaglineError
from ragline.service.samples import SAMPLE_TENANT

if TYPE_CHECKING:
    from ragline.core.models import IngestReport
    from ragline.ingest.loaders import iter_files
    from ragline.seam import FileIngest, Service, catalogue_of, files_of
    from ragline.service.engine import Engine
    from ragline.service.samples import sample_files
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    catalogue_of = Lazy("ragline.seam", "catalogue_of")
    files_of = Lazy("ragline.seam", "files_of")
    Engine = Lazy("ragline.service.engine", "Engine")
    iter_files = Lazy("ragline.ingest.loaders", "iter_files")
    IngestReport = Lazy("ragline.core.models", "IngestReport")
    sample_files = Lazy("ragline.service.samples", "sample_files")
    Settings = Lazy("ragline.settings", "Settings")


from ragline.cli._shared import (
    ApiKeyOption,
    ConfigOption,
    JsonOption,
    TenantOption,
    UrlOption,
    _parse_filters,
    _print_json,
    _serve,
    app,
    err,
    out,
)

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
    stopping: list[FileIngest] = []  # whoever ingests, for the message when interrupted

    with _IngestProgress(files, disable=as_json) as progress:

        async def work(service: Service, tenant_name: str) -> IngestReport:
            if sample:
                await _sample_tenant_only(service, tenant_name)
            ingest = files_of(service)
            stopping.append(ingest)
            return await ingest.ingest_paths(
                tenant_name,
                targets,
                follow_symlinks=follow_symlinks,
                id_prefix=id_prefix,
                on_file=progress.file,
                progress=progress.chunks,
            )

        def interrupted(name: str) -> str:
            progress.stop()
            return stopping[0].interrupted(name) if stopping else f"interrupted ({name})"

        report = _serve(config, url, api_key, tenant, work, on_interrupt=interrupted)
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


async def _sample_tenant_only(service: Service, tenant: str) -> None:
    """The sample corpus goes into its own tenant, never the user's: through a server, an
    API key's tenant wins over --tenant, so check which tenant the writes would land in."""
    try:
        stats = await catalogue_of(service).stats(tenant)
        landing, where = stats["tenant"], stats.get("server", "this index")
    except RaglineError as exc:
        landing, where = f"unknown ({exc})", "the server"
    if landing != SAMPLE_TENANT:
        err.print(
            f"[red]error:[/] through {where} the sample corpus would go into the tenant {landing!r}, "
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
    from ragline.service.watching import ServiceSink, Watcher

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

    async def work(service: Service, tenant_name: str) -> None:
        engine = getattr(service, "engine", None)  # a LocalService: this process's metrics
        if metrics_port and engine is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, registry=engine.metrics.registry)
        elif metrics_port:
            err.print("[yellow]note:[/] --metrics-port is for a local index; the server's /metrics has its freshness")
        watcher = Watcher(
            ServiceSink(service, tenant_name),
            folders,
            tenant_name,
            max_bytes,
            id_prefix,
            report=said,
            follow_symlinks=follow_symlinks,
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

    _serve(config, url, api_key, tenant, work, on_interrupt=lambda name: f"stopped watching ({name})")


@app.command()
def delete(
    document_id: Annotated[str, typer.Argument(help="The document id (see `ragline search`).")],
    tenant: TenantOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a document and all its chunks."""

    async def work(service: Service, tenant_name: str) -> int | None:
        return await service.delete(tenant_name, document_id)

    removed = _serve(config, url, api_key, tenant, work)
    if removed is None:
        out.print(f"delete of {document_id} accepted: queued in order with the document's writes")
    else:
        out.print(f"deleted {document_id}: {removed} chunks")


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

    async def every(service: Service, tenant_name: str) -> list[dict[str, Any]]:
        catalogue = catalogue_of(service)
        listed: list[dict[str, Any]] = []
        after = ""
        while len(listed) < limit:
            page, after_next = await catalogue.documents(
                tenant_name, prefix, after, min(1000, limit - len(listed)), filters
            )
            listed += page
            if after_next is None:
                break
            after = after_next
        return listed

    documents = _serve(config, url, api_key, tenant, every)
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

    async def work(service: Service, tenant_name: str) -> dict[str, Any]:
        return await catalogue_of(service).stats(tenant_name)

    result = _serve(config, url, api_key, tenant, work)
    if as_json:
        _print_json(json.dumps(result))
    else:
        for key, value in result.items():
            out.print(f"{key:>12}: {value}")
