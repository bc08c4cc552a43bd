"""``read_slides``: a Ray Data dataset of slide metadata, one row per slide.

Built on a custom datasource (:class:`SlideMetadataDatasource`): the files are listed on the
driver, then parallel read tasks open each slide's header (never its pixels) and produce the
rows. What the rows hold is :data:`~wsi_core.ray.metadata.SLIDE_SCHEMA`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from wsi_core.ray.listing import SLIDE_EXTENSIONS, expand_slide_paths
from wsi_core.ray.metadata import SLIDE_SCHEMA, TilingRequest, slide_table
from wsi_core.resolution import MPP

#: In-memory bytes of one row, for Ray's planning (a path and fourteen numbers).
ROW_BYTES = 256


def read_slides(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    tile_extent: int | tuple[int, int],
    stride: int | tuple[int, int],
    mpp: MPP | None = None,
    level: int | None = None,
    filesystem: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    slide_mpp: MPP | None = None,
    extensions: Iterable[str] = SLIDE_EXTENSIONS,
    **read_args: Any,
) -> ray.data.Dataset:
    """A Ray dataset with one row per slide: where to tile it and at what resolution.

    Args:
        paths: A slide file, a folder, or a list of them: local paths, fsspec URLs
            (``s3://bucket/prefix``), or paths inside ``filesystem``. Folders are searched
            recursively for files ending in one of ``extensions`` (case-insensitive), hidden
            files and folders skipped; a file named explicitly is read whatever its name.
        tile_extent: Tile width and height in pixels of the chosen level: an int or ``(x, y)``.
        stride: Distance between tile origins in pixels of the chosen level: an int or
            ``(x, y)``.
        mpp: Target resolution in micrometres per pixel (float or ``(x, y)``): each slide is
            tiled at its level closest to it (:meth:`~wsi_core.reader.SlideReader.closest_level`).
        level: Or a pyramid level index, the same for every slide. Exactly one of ``mpp`` and
            ``level`` (``ValueError`` otherwise).
        filesystem: An fsspec ``AbstractFileSystem`` the ``paths`` live in; its files are
            opened by URL with its ``storage_options`` (it must be reachable from the Ray
            workers: ``memory://`` is not).
        storage_options: fsspec options (endpoint, credentials) for listing and opening
            slides named by URL, sent to the read tasks. Credentials from the usual
            environment need none.
        slide_mpp: Level-0 micrometres per pixel to use for every slide instead of what the
            files record (for slides that record none, or a wrong one).
        extensions: File-name endings taken from folders (default
            :data:`~wsi_core.ray.listing.SLIDE_EXTENSIONS`).
        **read_args: Passed to ``ray.data.read_datasource`` (``override_num_blocks``,
            ``concurrency``, ``num_cpus``, ``ray_remote_args``, ...).

    Returns:
        A dataset of :data:`~wsi_core.ray.metadata.SLIDE_SCHEMA` rows: ``path, extent_x,
        extent_y, tile_extent_x, tile_extent_y, stride_x, stride_y, mpp_x, mpp_y, level,
        downsample, level_count, base_mpp_x, base_mpp_y, vendor``. ``extent_*`` and ``mpp_*``
        are of the chosen level; ``path`` is the absolute local path or the URL, so that a
        worker on any directory finds the file, and files beside it can be named from it.

    Row order: sorted by ``path``. The slides are listed and sorted on the driver, each read
    task takes a consecutive run of them and keeps its order; Ray Data hands on the tasks'
    blocks in that order when ``DataContext.get_current().execution_options.preserve_order``
    is True, and otherwise as the tasks finish (then sort with ``Dataset.sort("path")`` if
    the order matters).

    Errors: a path that does not exist fails here, before Ray runs anything. A file that is
    not a readable slide, a slide without resolution when ``mpp`` is asked for, or one that
    lacks ``level`` fails when the dataset runs, with a :class:`~wsi_core.errors.SlideError`
    whose message starts with the file's path (Ray re-raises it on the driver).

    The work per slide is opening its header: TIFF-family slides read by range requests when
    named by URL (no download), other formats need local files.
    """
    request = TilingRequest.of(
        tile_extent=tile_extent,
        stride=stride,
        mpp=mpp,
        level=level,
        slide_mpp=slide_mpp,
        storage_options=storage_options,
    )
    locations = expand_slide_paths(
        paths, filesystem=filesystem, storage_options=storage_options, extensions=extensions
    )
    if locations.storage_options != request.storage_options:
        request = dataclasses.replace(request, storage_options=locations.storage_options)
    return ray.data.read_datasource(SlideMetadataDatasource(locations.paths, request), **read_args)


class SlideMetadataDatasource(Datasource):
    """Slide metadata rows for a fixed, sorted list of slide locations.

    ``get_read_tasks`` splits the list into at most ``parallelism`` consecutive runs; each
    read task opens its slides one after another and yields one block of their rows, in the
    list's order.
    """

    def __init__(self, locations: list[str], request: TilingRequest) -> None:
        super().__init__()
        self._locations = list(locations)
        self._request = request

    def get_name(self) -> str:
        return "Slides"  # Ray shows read tasks as "Read" + this name

    def estimate_inmemory_data_size(self) -> int:
        return ROW_BYTES * len(self._locations)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        n = len(self._locations)
        count = max(1, min(int(parallelism), n)) if n else 0
        tasks = []
        for i in range(count):
            run = self._locations[i * n // count : (i + 1) * n // count]
            metadata = BlockMetadata(
                num_rows=len(run),
                size_bytes=ROW_BYTES * len(run),
                exec_stats=None,
                input_files=tuple(run),
            )
            tasks.append(
                ReadTask(
                    functools.partial(_read_run, run, self._request),
                    metadata,
                    schema=SLIDE_SCHEMA,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks


def _read_run(locations: list[str], request: TilingRequest) -> list[pa.Table]:
    """The read task's body: one block with the rows of ``locations``."""
    return [slide_table(locations, request)]
