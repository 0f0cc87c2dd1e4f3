"""The pipeline's bus: topics, worker, publish, dlq."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ragline.core.errors import ConfigurationError, DocumentError
from ragline.core.errors import NotFound as NotFoundError

if TYPE_CHECKING:
    from ragline.core.models import Document
    from ragline.ingest.loaders import iter_files, load_file
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    iter_files = Lazy("ragline.ingest.loaders", "iter_files")
    load_file = Lazy("ragline.ingest.loaders", "load_file")
    Settings = Lazy("ragline.settings", "Settings")


from ragline.cli._shared import ConfigOption, JsonOption, T, TenantOption, _main, _print_json, app, err, out
from ragline.cli.documents import IdPrefixOption

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
    from ragline.adapters.buses import build_bus

    async def main() -> T:
        bus = build_bus(settings.bus)
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
    from ragline.adapters.buses import topic_specs

    settings = _bus_settings(config, bus)
    specs = topic_specs(settings.bus)
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
    from ragline.service.observability import configure_logging, setup_tracing
    from ragline.service.worker_process import run_workers

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
    from ragline.service.workers import dead_letters

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
    from ragline.service.workers import dead_letters, replay

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
