"""Fixtures for the Dagster layer: small synthetic demo slides, a temporary persistent
Dagster instance, and the definitions bound to settings that point at temporary folders."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from wsi_assets_support import SCALE, Pipeline, make_settings

from wsi_assets import demo
from wsi_assets.definitions import build_defs


def pytest_configure(config: pytest.Config) -> None:
    # Raised inside Dagster itself when it converts observable source assets (not our code).
    config.addinivalue_line(
        "filterwarnings", "ignore:Property `OpDefinition.version`:DeprecationWarning"
    )


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


@pytest.fixture(name="make_settings")
def make_settings_fixture():
    """``make_settings(slide_root, output_root, **overrides)`` for tests."""
    return make_settings


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A temporary, persistent (SQLite) Dagster instance."""
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def pipeline(slide_root: Path, tmp_path: Path, instance: DagsterInstance) -> Pipeline:
    settings = make_settings(slide_root, tmp_path / "output")
    return Pipeline(settings, build_defs(settings), instance)
