"""``python -m ragline``: the same command line as ``ragline``."""

from ragline.cli import app

app(prog_name="ragline")
