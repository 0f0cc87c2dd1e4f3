"""The package is laid out by layer and the arrows only point down (issue 29).

Layers, lowest first: ``core`` (models, ports, stages, errors, domain rules) <- ``ingest``
and ``settings`` <- ``adapters`` (one package per port) <- the service (``service``,
``seam``, ``client``) <- ``ops`` (stack, drills, balancer, benchmarks) <- ``cli``.
A module imports only from its own layer or a lower one. Checked on the source, imports
inside functions and under TYPE_CHECKING included (an arrow is an arrow)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ragline

PACKAGE = Path(ragline.__file__).parent
RANK = {
    "core": 0,
    "ingest": 1,
    "settings": 1,
    "adapters": 2,
    "service": 3,
    "seam": 3,
    "client": 3,
    "ops": 4,
    "cli": 5,
    "__main__": 5,
}
# The package's front door re-exports names lazily from every layer; __version__ is data.
ANYWHERE = {"__version__", "__init__"}
MAX_LINES = 600
MAX_ROOT_MODULES = 6


def layer_of(path: Path, package: Path) -> str:
    """The layer of a module: its first component under the package."""
    return path.relative_to(package).with_suffix("").parts[0]


def imported_layers(path: Path) -> set[str]:
    """The layers (first components under ragline) a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the layers are read from absolute imports)")
        if isinstance(node, ast.ImportFrom) and node.module == "ragline":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ragline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ragline.")}
    return found


def wrong_arrows(package: Path) -> dict[str, list[str]]:
    """Each module that imports a higher layer, with the layers it should not import."""
    wrong = {}
    for path in sorted(package.rglob("*.py")):
        layer = layer_of(path, package)
        if layer == "__init__":
            continue
        rank = RANK[layer]
        above = sorted(
            other
            for other in imported_layers(path) - ANYWHERE
            if RANK.get(other, 99) > rank  # an unknown layer is a new root module: say where it goes
        )
        if above:
            wrong[str(path.relative_to(package))] = above
    return wrong


def test_every_arrow_points_down():
    assert wrong_arrows(PACKAGE) == {}


def test_the_core_imports_no_adapter_service_or_settings():
    core = [p for p in PACKAGE.rglob("*.py") if layer_of(p, PACKAGE) == "core"]
    assert len(core) > 10
    outside = {"adapters", "service", "ops", "cli", "settings", "seam", "client", "ingest"}
    assert {str(p.name): sorted(imported_layers(p) & outside) for p in core if imported_layers(p) & outside} == {}


def settings_names_taken(path: Path) -> set[str]:
    """What a module takes from ragline.settings."""
    return {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "ragline.settings"
        for alias in node.names
    }


# what an adapter may take from ragline.settings: its port's group, and the defaults
PORT_GROUPS = {"StoreSettings", "BusSettings", "CacheSettings", "LLMSettings", "EmbeddingSettings", "default"}


def test_adapters_receive_their_port_group_never_the_whole_settings():
    adapters = [p for p in PACKAGE.rglob("*.py") if layer_of(p, PACKAGE) == "adapters"]
    taken = {str(p.relative_to(PACKAGE)): settings_names_taken(p) - PORT_GROUPS for p in adapters}
    assert {name: sorted(extra) for name, extra in taken.items() if extra} == {}
    assert any(settings_names_taken(p) & PORT_GROUPS for p in adapters)  # the check reads what they take


def test_the_check_sees_an_adapter_taking_settings(tmp_path):
    (tmp_path / "probe.py").write_text("def f():\n    from ragline.settings import Settings, StoreSettings\n")
    assert settings_names_taken(tmp_path / "probe.py") - PORT_GROUPS == {"Settings"}


def test_the_root_holds_packages_and_a_handful_of_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_ROOT_MODULES, modules
    assert all(layer_of(p, PACKAGE) in RANK or p.name == "__init__.py" for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("source", ["from ragline.adapters.generators.templates import render", "import ragline.cli"])
def test_the_check_sees_an_upward_import_inside_a_function(tmp_path, source):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "probe.py").write_text(f"def f():\n    {source}\n")
    assert list(wrong_arrows(tmp_path)) == ["core/probe.py"]


def test_the_check_refuses_relative_imports(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "probe.py").write_text("from .models import Chunk\n")
    with pytest.raises(AssertionError, match="relative import"):
        wrong_arrows(tmp_path)


def test_the_check_places_a_new_root_module(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "probe.py").write_text("from ragline.newthing import x\n")
    assert wrong_arrows(tmp_path) == {"core/probe.py": ["newthing"]}


def test_no_module_over_the_line_cap():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
