"""The scale-out stack on one machine (stack up/status/down) and its hidden helpers (lb, llm-server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragline.core.errors import ConfigurationError

if TYPE_CHECKING:
    pass
else:  # imported on first use: --help and --version stay fast (ragline/core/lazy.py)
    pass


from ragline.cli._shared import _main, app, err, out

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
    from ragline.ops.stack import Stack

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
    from ragline.ops.stack import Stack

    stack = Stack(directory.resolve())
    if not stack.running():
        err.print(f"no stack runs from {stack.directory}")
        raise typer.Exit(1)
    out.print(stack.status())


@stack_app.command("down")
def stack_down(directory: StackDir = Path(".ragline/stack")) -> None:
    """Stop every process of the stack."""
    from ragline.ops.stack import Stack

    Stack(directory.resolve()).down()
    err.print("stack stopped")


@app.command("lb", hidden=True)
def load_balancer(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")],
    backend: Annotated[list[str], typer.Option(help="host:port of an API replica (repeat).")],
) -> None:
    """A TCP round-robin balancer over API replicas (the local stack's Service)."""
    from ragline.ops.lb import Balancer
    from ragline.service.observability import configure_logging

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

    from ragline.adapters.generators.local import serve_http

    server = serve_http(port, threads=threads, parallel=parallel)
    err.print(f"LLM server on {server.listening_address}")
    while True:
        _time.sleep(3600)
