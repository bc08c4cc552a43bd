"""Fixtures for the asset layer: small synthetic demo slides, a temporary persistent Dagster
instance, and a harness bound to settings that point at temporary folders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from wsi_assets_support import SCALE, Harness, make_settings

from wsi_assets.pipeline import demo


@pytest.fixture(autouse=True)
def _no_wsi_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in tests come from the test, never from the developer's WSI_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("WSI_") and name != "WSI_SHARED_DATA":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo slides (annotations, masks), generated once per session; do not modify."""
    root = tmp_path_factory.mktemp("demo-source")
    demo.generate(root, demo.scaled(demo.DEMO_SLIDES, SCALE))
    return root


@pytest.fixture
def slide_root(tmp_path: Path, demo_source: Path) -> Path:
    """A private copy of the demo slides that a test may change."""
    root = tmp_path / "slides"
    shutil.copytree(demo_source, root)
    return root


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A temporary, persistent (SQLite) Dagster instance."""
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def harness(slide_root: Path, tmp_path: Path, instance: dg.DagsterInstance) -> Harness:
    return Harness(make_settings(slide_root, tmp_path / "output"), instance)
