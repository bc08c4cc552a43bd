"""Settings of the tile-table pipeline, from ``WSI_*`` environment variables.

One :class:`Settings` object is built when a code location, a command or a test starts; it
feeds the code versions of the tables and every run that builds them, so what a table was
built with and what the next run uses come from the same place. Every value is validated
when the object is built; an error names the environment variable.

==============================  =============================================  ===================
variable                        meaning                                        example
==============================  =============================================  ===================
``WSI_SLIDE_ROOT``              folder or ``s3://`` prefix with slides         ``s3://lab/wsi``
``WSI_OUTPUT_ROOT``             folder or ``s3://`` prefix for the tables      ``./data/output``
``WSI_STORAGE_OPTIONS``         fsspec options for both roots (JSON)           ``{"anon": true}``
``WSI_MPP``                     target resolution, micrometres per pixel       ``0.5``
``WSI_TILE_EXTENT``             tile width and height, level pixels            ``512``
``WSI_STRIDE``                  step between tile origins, level pixels        ``256``
``WSI_LAST``                    last tile per axis: keep, shift or drop        ``shift``
``WSI_LABEL_CLASSES``           column name -> regex on class labels (JSON)    ``{"t": "Tum.*"}``
``WSI_ROI``                     ROI as WKT, tile-relative level pixels         ``POLYGON((...))``
``WSI_ANNOTATION_TEMPLATES``    annotation file names, JSON list or commas     ``{stem}.xml``
``WSI_OVERLAY_TEMPLATES``       overlay file names, JSON list or commas        ``{stem}_mask.tif``
``WSI_SLIDE_EXTENSIONS``        what counts as a slide, JSON list or commas    ``.svs,.ndpi``
``WSI_SLIDE_MPP``               level-0 mpp for slides that record none        ``0.25``
``WSI_OVERLAY_MPP``             level-0 mpp for overlays that record none      ``8.0``
``WSI_SLIDE_MPP_OVERRIDE``      level-0 mpp for every slide, recorded or not   ``0.25``
``WSI_OVERLAY_MPP_OVERRIDE``    level-0 mpp for every overlay                  ``8.0``
``WSI_LABEL_PROPERTY``          where the class label is (GeoJSON, ASAP)       ``label``
``WSI_MAX_TILES``               tiles a slide may have before it is refused    ``2000000``
``WSI_EXCLUDE``                 file names that are never slides (globs)       ``*_mask.*``
``WSI_TISSUE``                  tissue-mask parameters changed (JSON object)   ``{"pen_hue":null}``
``WSI_DATASET``                 tile_dataset rules changed (JSON object)       ``{"seed":1}``
``WSI_BACKFILL_BATCH``          slides per run of a backfill (on Ray)          ``50``
==============================  =============================================  ===================

Relative local roots are made absolute against the working directory when the settings are
built, so that the webserver, the daemon and every run agree on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import shapely.wkt
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from wsi_core.remote import is_url
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tables.tile_dataset import TILE_DATASET, DatasetRules
from wsi_core.tissue import TISSUE_MASK, TissueParameters

#: Where ``make run`` writes the synthetic demo slides when no slide root is configured.
DEMO_SLIDE_ROOT = "data/demo"
DEFAULT_OUTPUT_ROOT = "data/output"
ENV_PREFIX = "WSI_"

#: Class names become column names (``coverage_<name>``), so they are restricted to this.
CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")

#: Revision of each table's code; bump one when its builder changes what it writes.
#: 2: WSI_SLIDE_MPP / WSI_OVERLAY_MPP apply only to files that record no resolution;
#: annotations are clipped to the slide; overlays are aligned and checked against the slide.
#: The tissue mask (not a table, but versioned like one): 1, wsi_core.tissue's first method.
REVISIONS = {
    SLIDE_METADATA: "2",
    TILE_GRID: "2",
    ANNOTATION_COVERAGE: "2",
    OVERLAY_OVERLAP: "2",
    TISSUE_MASK: "1",
    TILE_DATASET: "1",
}

StrList = Annotated[list[str], NoDecode]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each environment variable at fault."""


class Settings(BaseSettings):
    """Where slides are, where tables go, and how slides are tiled and measured.

    Units: ``mpp``, ``slide_mpp`` and ``overlay_mpp`` in micrometres per pixel;
    ``tile_extent`` and ``stride`` in pixels of the pyramid level closest to ``mpp`` (square
    tiles); ``roi`` in the same level pixels, relative to the tile's top-left corner.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    slide_root: str = Field(
        default=DEMO_SLIDE_ROOT,
        description="Folder or s3:// prefix listed (recursively) for slide files.",
    )
    output_root: str = Field(
        default=DEFAULT_OUTPUT_ROOT,
        description="Folder or s3:// prefix that receives {table}/slide={key}/part-0.parquet.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for remote roots and files (credentials stay in the "
        "usual AWS_* environment, never here).",
    )
    slide_extensions: StrList = Field(
        default=[".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".svslide"],
        description="File name endings (case-insensitive) that count as slides.",
    )
    annotation_templates: StrList = Field(
        default=["{stem}.xml", "{stem}.geojson", "{stem}.json"],
        description="Where a slide's annotation file is looked for, in order; the first that "
        "exists wins. Placeholders {stem}, {name}, {key}; relative templates are resolved "
        "beside the slide.",
    )
    overlay_templates: StrList = Field(
        default=["{stem}_tissue_mask.tiff", "{stem}_tissue_mask.tif"],
        description="Like annotation_templates, for the raster overlay (a tissue mask).",
    )
    mpp: float = Field(default=1.0, gt=0, description="Target resolution, micrometres per pixel.")
    tile_extent: int = Field(default=256, gt=0, description="Tile width and height, level pixels.")
    stride: int = Field(default=256, gt=0, description="Step between tile origins, level pixels.")
    last: Literal["keep", "shift", "drop"] = Field(
        default="keep", description="What to do with the last tile of each row and column."
    )
    label_classes: dict[str, str] = Field(
        default={"tumor": "(?i)tumou?r.*", "stroma": "(?i)stroma.*"},
        description="Label classes: column name -> regular expression that fullmatches the "
        "annotation's class label (ASAP PartOfGroup, GeoJSON classification.name or name, "
        "Darwin name).",
    )
    roi: str | None = Field(
        default=None,
        description="Region of interest as WKT, tile-relative level pixels; None = whole tile.",
    )
    slide_mpp: float | None = Field(
        default=None, gt=0, description="Level-0 mpp for slides whose file records none."
    )
    overlay_mpp: float | None = Field(
        default=None, gt=0, description="Level-0 mpp for overlays whose file records none."
    )
    slide_mpp_override: float | None = Field(
        default=None, gt=0, description="Level-0 mpp for every slide, whatever its file records."
    )
    overlay_mpp_override: float | None = Field(
        default=None, gt=0, description="Level-0 mpp for every overlay, whatever it records."
    )
    label_property: str | None = Field(
        default=None,
        description="Where an annotation's class label is read: a dotted path in a GeoJSON "
        "feature's properties (DSA exports: 'label'), or the ASAP attribute ('Name'); None: "
        "each format's class field.",
    )
    max_tiles: int = Field(
        default=2_000_000,
        gt=0,
        description="A slide whose tile grid would have more tiles is refused (a damaged or "
        "hostile header can claim any size).",
    )
    exclude: StrList = Field(
        default=["*_mask.*", "*_tissue*", "*_label*", "*thumbnail*", "*macro*"],
        description="File-name patterns (case-insensitive globs) that are never slides.",
    )
    tissue: dict[str, Any] = Field(
        default_factory=dict,
        description="Tissue-mask parameters that differ from the defaults, by the field names "
        "of wsi_core.tissue.TissueParameters (target_mpp in um/px, sizes in um and um2, hues "
        "in degrees).",
    )
    dataset: dict[str, Any] = Field(
        default_factory=dict,
        description="tile_dataset rules that differ from the defaults, by the field names of "
        "wsi_core.tables.tile_dataset.DatasetRules (fractions in [0, 1]; split: fraction of "
        "slides per set; seed).",
    )
    backfill_batch: int = Field(
        default=50,
        gt=0,
        le=10_000,
        description="Slides per run when a backfill covers many slides: each such run builds "
        "its slides in parallel on Ray (RAY_ADDRESS, else a local Ray). Not a table setting.",
    )

    @field_validator("slide_root", "output_root")
    @classmethod
    def _absolute_root(cls, root: str) -> str:
        return absolute_root(root)

    @field_validator(
        "slide_extensions", "annotation_templates", "overlay_templates", "exclude", mode="before"
    )
    @classmethod
    def _str_list(cls, value: Any) -> Any:
        """A JSON list or comma-separated values (what an environment variable can hold)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("annotation_templates", "overlay_templates")
    @classmethod
    def _templates(cls, templates: list[str]) -> list[str]:
        for template in templates:
            try:
                template.format(stem="s", name="n", key="k")
            except (KeyError, IndexError, ValueError) as error:
                problem = f"template {template!r} may use only {{stem}}, {{name}} and {{key}}"
                raise ValueError(problem) from error
        return templates

    @field_validator("label_classes")
    @classmethod
    def _classes(cls, classes: dict[str, str]) -> dict[str, str]:
        for name, pattern in classes.items():
            if not CLASS_NAME.fullmatch(name):
                raise ValueError(f"label class name {name!r} must match {CLASS_NAME.pattern}")
            try:
                re.compile(pattern)
            except re.error as error:
                problem = f"label class {name!r}: bad regular expression {pattern!r}: {error}"
                raise ValueError(problem) from error
        return classes

    @field_validator("tissue")
    @classmethod
    def _tissue(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _checked_fields(values, TissueParameters, "tissue parameters")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _checked_fields(values, DatasetRules, "tile_dataset rules")

    @field_validator("roi")
    @classmethod
    def _roi(cls, wkt: str | None) -> str | None:
        if wkt is None or not wkt.strip():
            return None
        try:
            geometry = shapely.wkt.loads(wkt)
        except shapely.errors.ShapelyError as error:
            raise ValueError(f"not a WKT geometry: {wkt!r} ({error})") from error
        if geometry.is_empty or geometry.area <= 0:
            raise ValueError(f"the ROI must be a polygon with an area: {wkt!r}")
        return wkt

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then ``WSI_*`` environment variables, then ``overrides``. Raises
        :class:`SettingsError` naming each variable whose value cannot be used."""
        try:
            return cls(**overrides)
        except (ValidationError, PydanticSettingsError) as error:
            raise SettingsError(_describe(error)) from None

    # What each table depends on ------------------------------------------------------------

    def table_params(self, table: str) -> dict[str, Any]:
        """The settings that decide the content of ``table`` (besides its upstream tables)."""
        slide = {
            "mpp": self.mpp,
            "slide_mpp": self.slide_mpp,
            "slide_mpp_override": self.slide_mpp_override,
        }
        if table == SLIDE_METADATA:
            return slide
        if table == TILE_GRID:
            return {
                **slide,
                "tile_extent": self.tile_extent,
                "stride": self.stride,
                "last": self.last,
                "max_tiles": self.max_tiles,
            }
        if table == ANNOTATION_COVERAGE:
            return {
                "label_classes": dict(sorted(self.label_classes.items())),
                "label_property": self.label_property,
                "roi": self.roi,
                "annotation_templates": list(self.annotation_templates),
            }
        if table == TISSUE_MASK:  # the slide's own resolution, never the tiling target
            return {
                "slide_mpp": self.slide_mpp,
                "slide_mpp_override": self.slide_mpp_override,
                "tissue": dataclasses.asdict(self.tissue_parameters()),
            }
        if table == TILE_DATASET:  # class order decides ties between labels
            return {
                "label_classes": list(self.label_classes),
                "rules": dataclasses.asdict(self.dataset_rules()),
            }
        if table == OVERLAY_OVERLAP:
            return {
                "roi": self.roi,
                "overlay_templates": list(self.overlay_templates),
                "overlay_mpp": self.overlay_mpp,
                "overlay_mpp_override": self.overlay_mpp_override,
            }
        raise KeyError(table)

    def code_version(self, table: str) -> str:
        """``table``'s code revision and a digest of the settings it depends on: a new value
        marks every stored ``table`` as out of date."""
        return f"{REVISIONS[table]}-{params_digest(self.table_params(table))}"

    def tissue_parameters(self) -> TissueParameters:
        """The tissue-mask parameters: the defaults with ``tissue`` applied."""
        return TissueParameters(**self.tissue)

    def dataset_rules(self) -> DatasetRules:
        """The tile_dataset rules: the defaults with ``dataset`` applied."""
        return DatasetRules(**self.dataset)

    def roi_geometry(self) -> BaseGeometry:
        """The region of interest in tile-relative level pixels (default: the whole tile)."""
        if self.roi:
            return shapely.wkt.loads(self.roi)
        return box(0, 0, self.tile_extent, self.tile_extent)


def absolute_root(root: str) -> str:
    """A local root made absolute against the working directory (``file://`` URLs become
    plain paths); other URLs lose their trailing ``/``."""
    if root.startswith("file://"):
        root = root.removeprefix("file://")
    if is_url(root):
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def params_digest(params: Mapping[str, Any]) -> str:
    """Short, stable digest of a parameter mapping (for code versions)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _describe(error: ValidationError | PydanticSettingsError) -> str:
    """One line per bad value, each starting with the environment variable's name."""
    if isinstance(error, PydanticSettingsError):  # a variable that is not valid JSON
        found = re.search(r'field "(\w+)"', str(error))
        field = found.group(1) if found else "?"
        return f"bad settings:\n  {ENV_PREFIX}{field.upper()}: {error.__cause__ or error}"
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        given = problem.get("input")
        lines.append(f"{ENV_PREFIX}{field.upper()}: {problem['msg']} (got {given!r})")
    return "bad settings:\n  " + "\n  ".join(lines)


def _checked_fields(values: dict[str, Any], kind: type, what: str) -> dict[str, Any]:
    """``values`` unchanged when they name only fields of the dataclass ``kind`` and pass its
    own checks (ranges, signs, fractions), else ValueError naming the unknown ones."""
    known = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    kind(**values)
    return values
