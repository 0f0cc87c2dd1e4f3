"""python -m ragline.cli"""

from . import app

app()
