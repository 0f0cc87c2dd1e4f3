"""The core imports no adapter, service or operations module (issue 29: core -> adapter
arrows ran back up). Checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import ragline

PACKAGE = Path(ragline.__file__).parent
CORE = ["errors", "models", "ports", "protocol", "stages", "prompting", "grounding", "ids", "text"]
OUTSIDE = {
    # adapters
    "generators", "stores", "embedders", "caches", "buses",
    # the service, operations and the command line
    "api", "gateway", "workers", "engine", "pipeline", "cli", "stack", "drills", "lb", "benchmarks",
    # configuration: the core is given values, never Settings
    "settings",
}  # fmt: skip


def imported(module: str) -> set[str]:
    """The ragline modules ``module`` imports (first component under ragline)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ragline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ragline.")}
    return found


def test_the_core_imports_nothing_from_the_adapters_the_service_or_settings():
    wrong = {module: sorted(imported(module) & OUTSIDE) for module in CORE}
    assert not any(wrong.values()), {m: w for m, w in wrong.items() if w}


def test_the_check_sees_an_adapter_import(tmp_path, monkeypatch):
    (tmp_path / "probe.py").write_text("def f():\n    from .generators.templates import render\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    assert imported("probe") == {"generators"}
