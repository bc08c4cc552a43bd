"""What the four table assets share: failures that name the file, the ROI, code versions."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import shapely.wkt
from dagster import Backoff, Failure, MetadataValue, RetryPolicy
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from ..config import WSISettings, params_digest
from ..discovery import find_companion, template_candidates
from ..registry import SlideEntry, SlideRegistry, UnknownSlideError
from ..tables import ForeignFileError, MissingUpstreamError, read_table, write_table

#: Transient storage errors (OSError from a network file system) are retried; bad files are
#: not (they raise ``Failure(allow_retries=False)``).
RETRY = RetryPolicy(max_retries=2, delay=2.0, backoff=Backoff.EXPONENTIAL)
GROUP = "tiles"

#: The columns that identify a tile in every per-tile table, in this order.
TILE_KEY_FIELDS = (
    pa.field("slide_key", pa.string()),
    pa.field("tile_x", pa.int64()),
    pa.field("tile_y", pa.int64()),
    pa.field("level", pa.int32()),
)
KEY_COLUMNS = tuple(field.name for field in TILE_KEY_FIELDS)
TILE_KEY_DESCRIPTIONS = {
    "slide_key": "partition key of the slide",
    "tile_x": "tile origin, level pixels (column)",
    "tile_y": "tile origin, level pixels (row)",
    "level": "pyramid level of the tile grid",
}


def code_version(revision: str, params: Mapping[str, Any]) -> str:
    """``revision`` of the asset's code plus a digest of the settings it depends on."""
    return f"{revision}-{params_digest(params)}"


def fail(path: str, problem: str, **metadata: Any) -> Failure:
    """A partition failure whose message starts with the file it is about; never retried."""
    return Failure(
        description=f"{path}: {problem}",
        metadata={"file": MetadataValue.path(path), "problem": problem, **metadata},
        allow_retries=False,
    )


@contextmanager
def about_file(uri: str, what: str) -> Iterator[None]:
    """Turn any error while reading ``uri`` into a ``Failure`` that names ``uri``.

    ``wsi_core`` errors carry the problem without the path (which may be a temporary local
    copy of a remote file); other errors keep their type and message. Transient storage
    errors (``OSError`` other than a missing file) propagate, so the retry policy applies.
    """
    from wsi_core.errors import WSIError

    try:
        yield
    except Failure:
        raise
    except WSIError as error:
        raise fail(uri, error.problem, kind=what) from error
    except FileNotFoundError as error:
        raise fail(uri, f"{what} file not found", kind=what) from error
    except (ForeignFileError, MissingUpstreamError) as error:
        raise Failure(description=str(error), allow_retries=False) from error
    except OSError:
        raise
    except Exception as error:
        raise fail(
            uri, f"cannot read {what}: {type(error).__name__}: {error}", kind=what
        ) from error


def slide_entry(settings: WSISettings, key: str) -> SlideEntry:
    """The registered slide of partition ``key`` (a ``Failure`` if it is not registered)."""
    try:
        return SlideRegistry(settings.output_root).resolve(key)
    except UnknownSlideError as error:
        raise Failure(description=str(error), allow_retries=False) from error


def companion(
    context: Any, templates: list[str], slide: SlideEntry, key: str, kind: str
) -> tuple[str | None, dict[str, Any]]:
    """The ``kind`` file ("annotation", "overlay") of a slide, found by ``templates``, and the
    ``{kind}_file`` metadata entry that says which file was used or, when there is none, every
    place that was looked at: the UI then shows plainly that nothing was measured."""
    found = find_companion(templates, slide.uri, key)
    if found is not None:
        return found, {f"{kind}_file": MetadataValue.path(found)}
    looked = template_candidates(templates, slide.uri, key)
    context.log.warning(f"{slide.uri}: no {kind} file (looked for {looked})")
    return None, {
        f"{kind}_file": MetadataValue.text("none found; looked for: " + ", ".join(looked))
    }


def roi_polygon(settings: WSISettings) -> BaseGeometry:
    """The region of interest in tile-relative level pixels (default: the whole tile)."""
    if settings.roi_wkt:
        return shapely.wkt.loads(settings.roi_wkt)
    return box(0, 0, settings.tile_extent, settings.tile_extent)


def save(settings: WSISettings, asset: str, key: str, table: Any) -> tuple[str, str]:
    """Write one slide's table (see ``tables.write_table``); a foreign file fails the run."""
    try:
        return write_table(settings.output_root, asset, key, table)
    except ForeignFileError as error:
        raise Failure(description=str(error), allow_retries=False) from error


def load(settings: WSISettings, asset: str, key: str) -> Any:
    """One slide's upstream table; a missing one fails the run with what to do about it."""
    try:
        return read_table(settings.output_root, asset, key)
    except MissingUpstreamError as error:
        raise Failure(description=str(error), allow_retries=False) from error
