"""The three floors: the engine-neutral floor imports no Dagster, the Dagster floor no
Dagster internals, and settings are read when definitions are built, not on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEUTRAL = [
    "wsi_core.tables",
    "wsi_core.tables.checks",
    "wsi_assets.pipeline.settings",
    "wsi_assets.pipeline.locations",
    "wsi_assets.pipeline.keys",
    "wsi_assets.pipeline.registry",
    "wsi_assets.pipeline.tables",
    "wsi_assets.pipeline.slides",
    "wsi_assets.pipeline.steps",
    "wsi_assets.pipeline.plans",
    "wsi_assets.pipeline.summary",
    "wsi_assets.pipeline.demo",
]


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or None,
        check=False,
    )


def test_the_engine_neutral_floor_imports_no_dagster() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {NEUTRAL!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["wsi_core", "wsi_assets"])
def test_no_dagster_internals_anywhere(package: str) -> None:
    private = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name.startswith("dagster._") or (package == "wsi_core" and name.startswith("dagster"))
    }
    assert private == set()


def test_pipeline_modules_import_nothing_from_the_dagster_floor() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in (ROOT / "wsi_assets" / "pipeline").glob("*.py")
        for name in _imports(path)
        if name.startswith("wsi_assets.") and not name.startswith("wsi_assets.pipeline")
    }
    assert offenders == set()


def test_settings_are_read_when_definitions_are_built_not_on_import() -> None:
    code = (
        "import wsi_assets.definitions as d\n"
        "print('imported')\n"
        "try:\n"
        "    d.defs()\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "WSI_MPP": "-1", "HOME": str(ROOT)}
    done = _run(code, **env)
    assert done.stdout.splitlines()[0] == "imported", done.stderr
    assert "SettingsError" in done.stdout and "WSI_MPP" in done.stdout
