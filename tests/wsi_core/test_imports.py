"""The package's import graph: no module of wsi_core imports, even lazily, a module that
imports it back, and ``import wsi_core.tiling`` stays free of the slide backends."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wsi_core

PACKAGE_ROOT = Path(wsi_core.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The wsi_core modules that ``path`` imports anywhere in its body (top level or inside a
    function), by absolute name."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets.add(node.module)
            # ``from wsi_core.pkg import module`` imports that module too.
            targets.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in known}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "wsi_core.slide" in graph and "wsi_core.reader" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_backends_import_the_reader_not_the_factory():
    graph = import_graph()
    for backend in ("wsi_core.openslide", "wsi_core.tiff_reader"):
        assert "wsi_core.reader" in graph[backend]
        assert "wsi_core.slide" not in graph[backend]
    assert {"wsi_core.openslide", "wsi_core.tiff_reader"} <= graph["wsi_core.slide"]


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_each_backend_imports_first_in_a_fresh_interpreter():
    code = (
        "import sys, wsi_core.openslide, wsi_core.tiff_reader; "
        "assert 'wsi_core.slide' not in sys.modules, 'a backend pulled in the factory'; "
        "import wsi_core.tiling; "
        "from wsi_core.slide import SlideReader, open_slide; "
        "from wsi_core.reader import SlideReader as Base; assert SlideReader is Base"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiling_does_not_load_the_slide_backends():
    code = (
        "import sys, wsi_core.tiling; "
        "loaded = {'openslide', 'tifffile', 'wsi_core.slide'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numba_loads_only_with_the_compiled_kernels():
    """numba (about 120 MB resident and a third of a second to import) stays out of processes
    that only import the packages, as Dagster's code servers and sensors do, until a kernel
    that is compiled runs."""
    code = (
        "import sys, wsi_core.tiling, wsi_core.geometry, wsi_assets.definitions; "
        "assert 'numba' not in sys.modules, 'numba was imported'; "
        "from shapely.geometry import box; "
        "wsi_core.tiling.annotation_coverage([box(0, 0, 9, 9)], box(0, 0, 4, 4), [(0, 0)], 1.0); "
        "assert 'numba' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
