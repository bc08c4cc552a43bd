"""Settings of the tile-table pipeline: one Dagster resource, defaults that work on a fresh clone.

Every field can be overridden by an environment variable (read once, when the code location
loads; restart ``dagster dev`` or reload the location after changing one):

==========================  ==========================================  =========================
variable                    field                                       example
==========================  ==========================================  =========================
``WSI_SLIDE_ROOT``          ``slide_root`` (folder or ``s3://`` prefix) ``s3://lab/slides``
``WSI_OUTPUT_ROOT``         ``output_root``                             ``./data/output``
``WSI_MPP``                 ``mpp`` (micrometres per pixel)             ``0.5``
``WSI_TILE_EXTENT``         ``tile_extent`` (level pixels)              ``512``
``WSI_STRIDE``              ``stride`` (level pixels)                   ``256``
``WSI_LAST``                ``last`` (keep, shift or drop)              ``shift``
``WSI_LABEL_CLASSES``       ``label_classes`` (JSON object)             ``{"tumor": "Tumor.*"}``
``WSI_ROI``                 ``roi_wkt`` (WKT, tile-relative)            ``POLYGON((...))``
``WSI_ANNOTATION_TEMPLATES``  ``annotation_templates`` (JSON or commas)  ``{stem}.xml,{stem}.json``
``WSI_OVERLAY_TEMPLATES``   ``overlay_templates`` (JSON or commas)      ``{stem}_mask.tif``
``WSI_SLIDE_EXTENSIONS``    ``slide_extensions`` (JSON or commas)       ``.svs,.ndpi``
``WSI_SLIDE_MPP``           ``slide_mpp`` (override for slides w/o mpp) ``0.25``
``WSI_OVERLAY_MPP``         ``overlay_mpp`` (same, for overlays)         ``8.0``
==========================  ==========================================  =========================

Relative local roots are made absolute against the working directory at load time, so that
the webserver, the daemon and every run agree on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

#: Where ``make run`` writes the synthetic demo slides when no slide root is configured.
DEMO_SLIDE_ROOT = "data/demo"
DEFAULT_OUTPUT_ROOT = "data/output"

#: Class names become column names (``coverage_<name>``), so they are restricted to this.
CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
LAST_MODES = ("keep", "shift", "drop")


class WSISettings(ConfigurableResource):
    """Where slides are, where tables go, and how slides are tiled and measured.

    Units: ``mpp`` in micrometres per pixel; ``tile_extent`` and ``stride`` in pixels of the
    pyramid level closest to ``mpp`` (square tiles); ``roi_wkt`` in the same level pixels,
    relative to the tile's top-left corner (default: the whole tile).
    """

    slide_root: str = Field(
        default=DEMO_SLIDE_ROOT,
        description="Folder or s3:// prefix listed (recursively) for slide files.",
    )
    output_root: str = Field(
        default=DEFAULT_OUTPUT_ROOT,
        description="Folder or s3:// prefix that receives {asset}/slide={key}/part-0.parquet.",
    )
    slide_extensions: list[str] = Field(
        default=[".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide"],
        description="File name endings (case-insensitive) that count as slides.",
    )
    annotation_templates: list[str] = Field(
        default=["{stem}.xml", "{stem}.geojson", "{stem}.json"],
        description=(
            "Where a slide's annotation file is looked for, in order; the first that exists wins. "
            "Placeholders {stem}, {name}, {key}; relative templates are resolved beside the slide."
        ),
    )
    overlay_templates: list[str] = Field(
        default=["{stem}_tissue_mask.tiff", "{stem}_tissue_mask.tif"],
        description="Like annotation_templates, for the raster overlay (e.g. a tissue mask).",
    )
    mpp: float = Field(default=1.0, description="Target resolution in micrometres per pixel.")
    tile_extent: int = Field(default=256, description="Tile width and height in level pixels.")
    stride: int = Field(default=256, description="Step between tile origins in level pixels.")
    last: str = Field(default="keep", description="Last tile per axis: keep, shift or drop.")
    label_classes: dict[str, str] = Field(
        default={"tumor": "(?i)tumou?r.*", "stroma": "(?i)stroma.*"},
        description=(
            "Label classes: column name -> regular expression that fullmatches the annotation's "
            "class label (ASAP PartOfGroup, GeoJSON classification.name or name, Darwin name)."
        ),
    )
    roi_wkt: str | None = Field(
        default=None,
        description="Region of interest in tile-relative level pixels (WKT); None = whole tile.",
    )
    slide_mpp: float | None = Field(
        default=None,
        description="Base resolution (micrometres per pixel) for slides that record none.",
    )
    overlay_mpp: float | None = Field(
        default=None,
        description="Base resolution (micrometres per pixel) for overlays that record none.",
    )

    def validate_settings(self) -> WSISettings:
        """Raise ``ValueError`` naming the bad field; return ``self`` for chaining."""
        if self.last not in LAST_MODES:
            raise ValueError(f"last must be one of {LAST_MODES}, not {self.last!r}")
        if self.mpp <= 0 or self.tile_extent <= 0 or self.stride <= 0:
            raise ValueError("mpp, tile_extent and stride must be positive")
        for name, pattern in self.label_classes.items():
            if not CLASS_NAME.fullmatch(name):
                raise ValueError(f"label class name {name!r} must match {CLASS_NAME.pattern}")
            try:
                re.compile(pattern)
            except re.error as error:
                problem = f"label class {name!r}: bad regular expression {pattern!r}: {error}"
                raise ValueError(problem) from error
        for template in [*self.annotation_templates, *self.overlay_templates]:
            template.format(stem="s", name="n", key="k")
        return self

    # Parameter digests: part of each asset's code version, so that a changed setting shows
    # the tables it affects as stale in the UI (see wsi_assets.assets).
    def tiling_params(self) -> dict[str, Any]:
        """The parameters that decide the tile grid."""
        return {
            "mpp": self.mpp,
            "tile_extent": self.tile_extent,
            "stride": self.stride,
            "last": self.last,
            "slide_mpp": self.slide_mpp,
        }

    def annotation_params(self) -> dict[str, Any]:
        """The parameters that decide annotation coverage (besides the tile grid)."""
        return {
            "label_classes": dict(sorted(self.label_classes.items())),
            "roi_wkt": self.roi_wkt,
            "annotation_templates": list(self.annotation_templates),
        }

    def overlay_params(self) -> dict[str, Any]:
        """The parameters that decide overlay overlap (besides the tile grid)."""
        return {
            "roi_wkt": self.roi_wkt,
            "overlay_templates": list(self.overlay_templates),
            "overlay_mpp": self.overlay_mpp,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WSISettings:
        """Defaults, then ``WSI_*`` environment variables, then ``overrides``; validated."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, (variable, parse) in _ENV_FIELDS.items():
            raw = env.get(variable)
            if raw is not None and raw.strip() != "":
                values[field] = parse(raw.strip())
        values.update(overrides)
        for root in ("slide_root", "output_root"):
            values[root] = absolute_root(values.get(root, cls.model_fields[root].default))
        return cls(**values).validate_settings()


def absolute_root(root: str) -> str:
    """A local root made absolute (against the working directory); URLs unchanged."""
    if "://" in root:
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def params_digest(params: Mapping[str, Any]) -> str:
    """Short, stable digest of a parameter mapping (for code versions)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _str_list(raw: str) -> list[str]:
    """A JSON list, or comma-separated values."""
    if raw.startswith("["):
        value = json.loads(raw)
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON list, got {raw!r}")
        return [str(item) for item in value]
    return [item.strip() for item in raw.split(",") if item.strip()]


def _json_object(raw: str) -> dict[str, str]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {raw!r}")
    return {str(key): str(item) for key, item in value.items()}


_ENV_FIELDS: dict[str, tuple[str, Any]] = {
    "slide_root": ("WSI_SLIDE_ROOT", str),
    "output_root": ("WSI_OUTPUT_ROOT", str),
    "mpp": ("WSI_MPP", float),
    "tile_extent": ("WSI_TILE_EXTENT", int),
    "stride": ("WSI_STRIDE", int),
    "last": ("WSI_LAST", str),
    "label_classes": ("WSI_LABEL_CLASSES", _json_object),
    "roi_wkt": ("WSI_ROI", str),
    "annotation_templates": ("WSI_ANNOTATION_TEMPLATES", _str_list),
    "overlay_templates": ("WSI_OVERLAY_TEMPLATES", _str_list),
    "slide_extensions": ("WSI_SLIDE_EXTENSIONS", _str_list),
    "slide_mpp": ("WSI_SLIDE_MPP", float),
    "overlay_mpp": ("WSI_OVERLAY_MPP", float),
}
