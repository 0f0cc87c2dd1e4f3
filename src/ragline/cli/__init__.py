"""The command line: a thin layer over the engine (or a server's API). Settings are read
here, once. One module per command group; ``app`` is the typer application."""

# each module registers its commands, in this order in --help
from ragline.cli import documents, answers, serving, bus, keys, stack  # noqa: F401, I001
from ragline.cli._shared import Client, app

__all__ = ["Client", "app"]
