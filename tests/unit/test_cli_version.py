"""`ragline --version` prints the package version and exits 0."""

from typer.testing import CliRunner

from ragline import __version__
from ragline.cli import app


def test_version_option_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ragline {__version__}"
