"""The command line starts without the engine: --help and --version load neither the
engine, numpy, pydantic nor httpx (they took 0.87 s of imports; ragline/core/lazy.py)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["ragline.service.engine", "numpy", "pydantic", "httpx", "pymilvus"]


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()[-1].split()[1:]


def test_importing_the_command_line_loads_nothing_heavy():
    assert loaded_after("import ragline.cli") == []


def test_version_and_help_answer_without_loading_the_engine():
    for argv in (["--version"], ["--help"]):
        run = "import ragline.cli\ntry:\n    ragline.cli.app()\nexcept SystemExit:\n    pass"
        code = f"import sys\nsys.argv = ['ragline', *{argv!r}]\n{run}"
        assert loaded_after(code) == [], argv


def test_the_lazy_names_still_resolve():
    from ragline import Engine, Settings
    from ragline.cli import Client

    assert Engine.__name__ == "Engine" and Settings.__name__ == "Settings"
    assert Client.__name__ == "Client"  # through the proxy, on first use
