"""The README's "Pixels on demand" example, run as written on the demo slides' tile_dataset:
the pixels it reads, in Ray Data and in a plain loop, are the slide's own (``read_tile``),
and no tile image is written anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray_support
from wsi_assets_support import make_settings

from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tile_dataset import build_tile_dataset
from wsi_core.slide import open_slide

pytest.importorskip("ray.data")
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first Python block after the heading "### Pixels on demand"."""
    text = README.read_text()
    start = text.index("```python\n", text.index("### Pixels on demand")) + len("```python\n")
    return text[start : text.index("```\n", start)]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    ray_support.start_ray(tmp_path_factory.mktemp("ray"))
    yield
    ray_support.stop_ray()


def test_the_readme_example_reads_the_tiles_pixels(
    slide_root: Path, tmp_path: Path, local_ray: None
) -> None:
    output = tmp_path / "out"
    # every tile kept and every slide in train, so that the example sees every tile
    rules = {"min_tissue_fraction": 0.0, "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    pipeline = Pipeline(make_settings(slide_root, output, dataset=rules))
    for slide in pipeline.slides.scan():
        for table in SLIDE_OUTPUTS:
            pipeline.build(table, slide.key)
    build_tile_dataset(pipeline)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    code = readme_example().replace('OUTPUT = "data/output"', f"OUTPUT = {str(output)!r}")
    assert code != readme_example()
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # the README example, as written

    train = namespace["train"]
    assert len(train) > 20 and train.slide_key.nunique() == 3
    by_ray = {row["row_hash"]: row["tile"] for row in namespace["pixels"].iter_rows()}
    assert set(by_ray) == set(train.row_hash)
    loop = namespace["TileDataset"](train)
    assert len(loop) == len(train)
    for index, row in train.iterrows():
        with open_slide(row.path) as slide:
            truth = slide.read_tile(
                row.tile_x, row.tile_y, row.tile_extent_x, row.tile_extent_y, row.level
            )
        image, label = loop[index]
        assert label == row.label
        np.testing.assert_array_equal(image, truth)
        np.testing.assert_array_equal(by_ray[row.row_hash], truth)
    assert truth.shape == (row.tile_extent_y, row.tile_extent_x, 3) and truth.dtype == np.uint8
    image, label = namespace["image"], namespace["label"]
    assert image.dtype == np.uint8 and label == train.label.iloc[0]
    # nothing was written beside the tables or the slides
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == before
