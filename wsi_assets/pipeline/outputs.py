"""What one slide's build produces: the four tables and the tissue mask, upstream first.

``wsi_core.tables.TABLES`` are the Parquet tables; the tissue mask
(:mod:`wsi_assets.pipeline.tissue_masks`) is a TIFF beside them, built for every slide from
the slide file alone. It is upstream of ``overlay_overlap``, which reads it when the slide
has no overlay of its own (a user's overlay always wins), so it is a parent of that table
only for such slides: :func:`parents` says which outputs one output of one slide reads.
"""

from __future__ import annotations

from collections.abc import Mapping

from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tables.schemas import UPSTREAM
from wsi_core.tissue import TISSUE_MASK

#: Every per-slide output, upstream first (the order a slide's outputs are built in).
SLIDE_OUTPUTS = (SLIDE_METADATA, TILE_GRID, TISSUE_MASK, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
#: The output each output is computed from, whatever the slide's files (None: the slide's
#: files alone). The tissue mask reads only the slide file.
PARENT: Mapping[str, str | None] = {**UPSTREAM, TISSUE_MASK: None}


def parents(output: str, has_overlay: bool) -> list[str]:
    """The outputs ``output`` of a slide reads: its :data:`PARENT`, and for
    ``overlay_overlap`` of a slide without an overlay file (``has_overlay`` False) the
    tissue mask too."""
    found = [] if PARENT[output] is None else [str(PARENT[output])]
    if output == OVERLAY_OVERLAP and not has_overlay:
        found.append(TISSUE_MASK)
    return found
