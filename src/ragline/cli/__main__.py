"""python -m ragline.cli"""

from ragline.cli import app

app()
