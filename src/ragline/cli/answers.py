"""Commands that answer: search, ask, eval, bench."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragline.core.errors import RaglineError

if TYPE_CHECKING:
    from ragline.core.models import Answer, Context
    from ragline.seam import Service
    from ragline.service.engine import Engine
    from ragline.settings import Settings
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    from ragline.core.lazy import Lazy

    Engine = Lazy("ragline.service.engine", "Engine")
    Settings = Lazy("ragline.settings", "Settings")


from ragline.cli._shared import (
    ApiKeyOption,
    ConfigOption,
    JsonOption,
    TenantOption,
    UrlOption,
    _parse_filters,
    _print_json,
    _query,
    _run,
    _serve,
    app,
    err,
    out,
)


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

    async def work(service: Service, tenant_name: str) -> Context:
        return await service.search(_query(question, tenant_name, top_k, filters, mode))

    context = _serve(config, url, api_key, tenant, work)
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


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=50)] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            "-g",
            help="local | openai | extractive (default: settings). Through a server: its own or extractive.",
        ),
    ] = None,
    tenant: TenantOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Answer a question from the documents, streaming, then list its sources."""
    streamed: list[str] = []

    async def work(service: Service, tenant_name: str) -> Answer | None:
        _say_which_generator(generator or service.generator_name)
        final = None
        async for item in service.stream(_query(question, tenant_name, top_k, generator=generator)):
            if isinstance(item, str):
                streamed.append(item)
                if not as_json:
                    out.print(item, end="", soft_wrap=True, highlight=False, markup=False)
            else:
                final = item
        return final

    answer = _serve(config, url, api_key, tenant, work, generator=generator)
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


def _say_which_generator(answering: str) -> None:
    if answering == "local":
        err.print(
            "[yellow]note:[/] the local model is SmolLM2-135M: small enough for any CPU, too small to be "
            "reliable. Its answers are checked against the passages and replaced by extractive ones when "
            "unsupported. For fluent answers point ragline at vLLM: RAGLINE_GENERATOR=openai RAGLINE_LLM_URL=..."
        )


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

    from ragline.ops import evaluation

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
    from ragline.ops import benchmarks

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
