"""``wsi-tiles``: one slide on this computer, without Dagster or Ray.

``info`` (what the slide holds), ``preview`` (the picture of a table the Dagster UI shows),
``tables`` (the four Parquet tables, the same as the assets) and ``export`` (tile images).
Every command works through the engine-neutral floor (:mod:`wsi_assets.pipeline`): the same
settings, file discovery, builders and table store as the Dagster assets and the Ray engine.

argparse, not click or typer: it is in the standard library (no dependency for a few
options), ``main(argv)`` returns an exit code that tests call directly, and errors are ours
to print as one line naming the file.

Exit codes: 0 done; 1 a file or setting that cannot be used (one line on stderr, naming the
file or option); 2 a command line that does not parse; 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from PIL import Image

from wsi_assets.pipeline.locations import location
from wsi_assets.pipeline.settings import SettingsError
from wsi_assets.pipeline.single_slide import SingleSlide, TableOutcome
from wsi_assets.pipeline.slide_info import SlideInfo, slide_info
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY
from wsi_assets.pipeline.tile_export import (
    FORMATS,
    INDEX_FILE,
    SelectionError,
    Thresholds,
    export_tiles,
    select_tiles,
)
from wsi_core.errors import WSIError
from wsi_core.progress import Progress
from wsi_core.tables import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    TILE_GRID,
)

PROG = "wsi-tiles"

DESCRIPTION = """\
Whole-slide image -> tile tables and tile images, for one slide, on this computer (no
Dagster, no Ray). The tables are the same as the pipeline's.
"""

EXAMPLES = """\
examples:
  wsi-tiles info slide.svs
  wsi-tiles preview slide.svs -o slide.png --table overlay_overlap
  wsi-tiles tables slide.svs -o tables --mpp 0.5 --tile-size 512
  wsi-tiles export slide.svs -o tiles --mpp 0.5 --min-tissue 0.5 --min-coverage tumor=0.5

"""

EPILOG = """\
Annotation and mask files are found beside the slide, as in the pipeline: SLIDE_STEM.xml,
.geojson or .json, and SLIDE_STEM_tissue_mask.tif(f); --annotation and --overlay name them
wherever they are. Every WSI_* environment variable of the project applies too (see the
README, "Configuration"); options given here win.

Units: resolutions in micrometres per pixel (um/px), tile sizes in pixels of the pyramid level
closest to --mpp, thresholds as fractions from 0 to 1.
"""

#: The option that sets each setting, for messages that name a WSI_* variable.
OPTION_OF = {
    "WSI_MPP": "--mpp",
    "WSI_TILE_EXTENT": "--tile-size",
    "WSI_STRIDE": "--stride",
    "WSI_LAST": "--last",
    "WSI_LABEL_CLASSES": "--class",
    "WSI_LABEL_PROPERTY": "--label-property",
    "WSI_SLIDE_MPP": "--slide-mpp",
    "WSI_SLIDE_MPP_OVERRIDE": "--slide-mpp-override",
    "WSI_OVERLAY_MPP": "--overlay-mpp",
    "WSI_OVERLAY_MPP_OVERRIDE": "--overlay-mpp-override",
    "WSI_MAX_TILES": "--max-tiles",
    "WSI_ANNOTATION_TEMPLATES": "--annotation",
    "WSI_OVERLAY_TEMPLATES": "--overlay",
}

#: Settings fields and the argparse destinations that set them.
FIELD_OF = {
    "mpp": "mpp",
    "tile_size": "tile_extent",
    "stride": "stride",
    "last": "last",
    "label_property": "label_property",
    "slide_mpp": "slide_mpp",
    "slide_mpp_override": "slide_mpp_override",
    "overlay_mpp": "overlay_mpp",
    "overlay_mpp_override": "overlay_mpp_override",
    "max_tiles": "max_tiles",
}


# Argument types ------------------------------------------------------------------------------


def _positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1, got {text}")
    return value


def _quality(text: str) -> int:
    value = _positive(int)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"JPEG quality goes from 1 to 100, got {text}")
    return int(value)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _threshold(text: str) -> tuple[str, float]:
    name, value = _pair(text)
    return name, _fraction(value)


# The parser -------------------------------------------------------------------------------------


def _slide_options() -> argparse.ArgumentParser:
    """Options every command shares: the slide, its files, how it is tiled and measured."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("slide", metavar="SLIDE", help="the slide file (.svs, .tiff, .ndpi, ...)")
    files = common.add_argument_group("annotation and tissue mask")
    files.add_argument(
        "--annotation",
        metavar="FILE",
        help="annotation file (ASAP .xml, QuPath .geojson, V7 Darwin or EMPAIA .json); "
        "default: SLIDE_STEM.xml/.geojson/.json beside the slide",
    )
    files.add_argument(
        "--overlay",
        metavar="FILE",
        help="tissue mask or other overlay aligned with the slide (a TIFF); "
        "default: SLIDE_STEM_tissue_mask.tif(f) beside the slide",
    )
    files.add_argument(
        "--class",
        dest="classes",
        metavar="NAME=REGEX",
        type=_pair,
        action="append",
        help="an annotation class: a column name and a regular expression that matches the "
        "whole label, e.g. --class 'tumor=(?i)tumou?r.*'; repeat for more classes (given "
        "classes replace the default tumor and stroma)",
    )
    files.add_argument(
        "--label-property",
        metavar="PATH",
        help="where the label is, if not in the format's usual field: a GeoJSON property "
        "('label' for Digital Slide Archive exports) or an ASAP attribute ('Name')",
    )
    tiles = common.add_argument_group("resolution and tiles")
    tiles.add_argument(
        "--mpp",
        type=_positive(float),
        metavar="UM",
        help="resolution to tile at, micrometres per pixel; the closest pyramid level is "
        "used (default 1.0, e.g. 0.5 for 20x)",
    )
    tiles.add_argument("--tile-size", type=_positive(int), metavar="PX", help="tile side (256)")
    tiles.add_argument(
        "--stride",
        type=_positive(int),
        metavar="PX",
        help="step from one tile to the next (default: the tile size, no overlap)",
    )
    tiles.add_argument(
        "--last",
        choices=["keep", "shift", "drop"],
        help="the last tile of a row or column where the slide ends: keep it reaching past "
        "the edge (filled white), shift it back inside, or drop it (default keep)",
    )
    tiles.add_argument(
        "--slide-mpp",
        type=_positive(float),
        metavar="UM",
        help="level-0 resolution for a slide whose file records none (the file's own wins)",
    )
    tiles.add_argument(
        "--slide-mpp-override",
        type=_positive(float),
        metavar="UM",
        help="level-0 resolution to use whatever the slide file records",
    )
    tiles.add_argument(
        "--overlay-mpp",
        type=_positive(float),
        metavar="UM",
        help="level-0 resolution for an overlay whose file records none",
    )
    tiles.add_argument(
        "--overlay-mpp-override",
        type=_positive(float),
        metavar="UM",
        help="level-0 resolution to use whatever the overlay file records",
    )
    tiles.add_argument(
        "--max-tiles",
        type=_positive(int),
        metavar="N",
        help="refuse a slide whose grid would have more tiles (default 2,000,000)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``wsi-tiles`` argument parser and its four commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EXAMPLES + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _slide_options()

    def command(name: str, summary: str, run: Callable[[argparse.Namespace], int]) -> Any:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    info = command(
        "info",
        "Show the slide's levels and resolution, and the annotation (labels, classes) and "
        "tissue mask found for it.",
        run_info,
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    preview = command(
        "preview",
        "Draw the slide with its tile grid, tiles coloured by annotation coverage or tissue, "
        "as a PNG (the picture the Dagster UI shows).",
        run_preview,
    )
    preview.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write")
    preview.add_argument(
        "--table",
        choices=[TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP],
        default=ANNOTATION_COVERAGE,
        help="what the tiles are coloured by (default annotation_coverage)",
    )
    _tables_option(preview, "default: a temporary folder, deleted afterwards")

    tables = command(
        "tables",
        "Write the slide's four Parquet tables: slide_metadata, tile_grid, "
        "annotation_coverage, overlay_overlap (the same as the Dagster pipeline's).",
        run_tables,
    )
    tables.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="output folder: DIR/TABLE/slide=KEY/part-0.parquet, the pipeline's layout",
    )
    tables.add_argument(
        "--rebuild", action="store_true", help="build every table, even those already current"
    )

    export = command(
        "export",
        "Write tile images (PNG or JPEG) named by level and position, optionally only tiles "
        "with enough tissue or annotation.",
        run_export,
    )
    export.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder for the images and tiles.parquet (every file with its tile's row)",
    )
    export.add_argument(
        "--format", choices=sorted(FORMATS), default="png", help="image format (default png)"
    )
    export.add_argument(
        "--quality", type=_quality, default=90, metavar="Q", help="JPEG quality, 1 to 100 (90)"
    )
    export.add_argument(
        "--min-tissue",
        type=_fraction,
        metavar="T",
        help="only tiles whose tissue fraction (from the tissue mask) is at least T",
    )
    export.add_argument(
        "--min-coverage",
        type=_threshold,
        action="append",
        metavar="CLASS=V",
        help="only tiles whose coverage by CLASS is at least V, e.g. tumor=0.5; repeat for "
        "several classes (a tile must pass all)",
    )
    _tables_option(export, "default: DIR/tables")
    return parser


def _tables_option(command: argparse.ArgumentParser, default: str) -> None:
    command.add_argument(
        "--tables",
        metavar="DIR",
        help="where the slide's tables are built or found (current tables there are reused, "
        f"e.g. from 'wsi-tiles tables'); {default}",
    )


# Commands ---------------------------------------------------------------------------------------


def open_slide_of(args: argparse.Namespace, output_root: str | None) -> SingleSlide:
    """The slide of ``args`` with the settings its options give."""
    fields = {field: getattr(args, dest) for dest, field in FIELD_OF.items() if getattr(args, dest)}
    if args.tile_size and not args.stride and "WSI_STRIDE" not in os.environ:
        fields["stride"] = args.tile_size  # a new tile size alone means tiles side by side
    if args.classes:
        fields["label_classes"] = dict(args.classes)
    if output_root is not None:
        fields["output_root"] = output_root
    return SingleSlide.open(args.slide, annotation=args.annotation, overlay=args.overlay, **fields)


def run_info(args: argparse.Namespace) -> int:
    info = slide_info(open_slide_of(args, None))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(describe(info))
    return 0


@contextmanager
def tile_bars() -> Iterator[Callable[[str], Progress]]:
    """A progress bar per table being measured, on stderr when it is a terminal: the
    ``progress(table)`` that :meth:`SingleSlide.build` takes."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def for_table(table: str) -> Progress:
        def report(done: int, total: int) -> None:
            bar = bars.get(table)
            if bar is None:
                bar = bars[table] = tqdm(total=total, unit="tile", desc=table, disable=None)
            bar.update(done - bar.n)

        return report

    try:
        yield for_table
    finally:
        for bar in bars.values():
            bar.close()


def run_tables(args: argparse.Namespace) -> int:
    single = open_slide_of(args, args.output)
    with tile_bars() as progress:
        outcomes = single.build(force=args.rebuild, progress=progress)
    for outcome in outcomes:
        print(_outcome_line(outcome))
        for warning in outcome.warnings:
            print(f"    warning: {_options_named(warning)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    tables_root = args.tables or os.path.join(args.output, "tables")
    single = open_slide_of(args, tables_root)
    thresholds = Thresholds(args.min_tissue, dict(args.min_coverage or []))
    _check_thresholds(single, thresholds)
    with tile_bars() as progress:
        outcomes = single.build([TILE_GRID, *thresholds.tables_needed()], progress=progress)
    for outcome in outcomes:
        if outcome.built:
            print(_outcome_line(outcome), file=sys.stderr)
    tables = {t: single.table(t)[0] for t in (TILE_GRID, *thresholds.tables_needed())}
    chosen = select_tiles(
        tables[TILE_GRID],
        thresholds,
        coverage=tables.get(ANNOTATION_COVERAGE),
        overlap=tables.get(OVERLAY_OVERLAP),
    )
    with tqdm(total=chosen.num_rows, unit="tile", desc=single.key, disable=None) as bar:
        export_tiles(
            single,
            chosen,
            args.output,
            image_format=args.format,
            quality=args.quality,
            progress=bar.update,
        )
    grid_rows = tables[TILE_GRID].num_rows
    print(
        f"{chosen.num_rows} of {grid_rows} tiles written to {args.output} (listed in {INDEX_FILE})"
    )
    return 0


def run_preview(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="wsi-tiles-") as scratch:
        single = open_slide_of(args, args.tables or scratch)
        png = single.picture(args.table)
    location(args.output, single.settings.storage_options).write_bytes(png)
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    print(f"{args.output}: the {args.table} picture, {width} x {height} px")
    return 0


def _check_thresholds(single: SingleSlide, thresholds: Thresholds) -> None:
    """Before any work: a threshold on a class the settings do not have, or on a file the
    slide does not have, is a mistake of the command line."""
    classes = single.settings.label_classes
    unknown = sorted(set(thresholds.min_coverage) - set(classes))
    if unknown:
        raise SelectionError(
            f"--min-coverage: no class {', '.join(map(repr, unknown))}; the classes are "
            f"{', '.join(classes)} (set them with --class NAME=REGEX)"
        )
    files = single.files()
    needs = [
        (ANNOTATION, "--min-coverage", bool(thresholds.min_coverage)),
        (OVERLAY, "--min-tissue", thresholds.min_tissue is not None),
    ]
    for kind, option, wanted in needs:
        if wanted and files.files[kind] is None:
            looked = ", ".join(files.looked_for.get(kind, [])) or "nowhere"
            raise SelectionError(
                f"{option} needs the slide's {kind} file and none was found (looked for "
                f"{looked}); name one with --{kind}"
            )


# Text -------------------------------------------------------------------------------------------


def _outcome_line(outcome: TableOutcome) -> str:
    done = f"built ({outcome.reason})" if outcome.built else "current, kept"
    return f"{outcome.table:<20} {outcome.rows:>9,} rows  {done}: {outcome.uri}"


def _size(count: int) -> str:
    """A file size in bytes, for people."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _um(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


MPP_SOURCE_TEXT = {
    "file": "recorded in the file",
    "fallback": "from --slide-mpp (the file records none)",
    "override": "from --slide-mpp-override (instead of the file's own)",
}
OVERLAY_SOURCE_TEXT = {
    "file": "recorded in the file",
    "fallback": "from --overlay-mpp (the file records none)",
    "override": "from --overlay-mpp-override",
    "slide dimensions": "the slide's, scaled to the overlay's size (the file records none)",
}


def describe(info: SlideInfo) -> str:
    """``info`` as text for people."""
    lines = [
        f"slide       {info.uri}",
        f"            key {info.key}, {_size(info.file_size)}, vendor {info.vendor}",
    ]
    if info.base_mpp is None:
        lines.append(
            "resolution  not recorded in the file: give it with --slide-mpp UM "
            "(micrometres per level-0 pixel) to tile this slide"
        )
    else:
        source = MPP_SOURCE_TEXT.get(info.mpp_source or "", info.mpp_source or "")
        lines.append(
            f"resolution  {_um(info.base_mpp[0])} x {_um(info.base_mpp[1])} um/px at level 0, "
            f"{source}"
        )
    lines.append("levels      level      width x height  downsample  um/px")
    for level in info.levels:
        chosen = "  <- tiled" if level.level == info.level else ""
        lines.append(
            f"            {level.level:>5}  {level.width:>9} x {level.height:<6}  "
            f"{level.downsample:>10.4g}  {_um(level.mpp_x)}{chosen}"
        )
    if info.tiles is not None and info.level is not None:
        lines.append(
            f"tiles       {_plural(info.tiles, 'tile')} of {info.tile_extent} px every "
            f"{info.stride} px at level {info.level} (target {_um(info.target_mpp)} um/px)"
        )
    lines.extend(f"warning     {text}" for text in info.warnings)
    lines.extend(_annotation_lines(info))
    lines.extend(_overlay_lines(info))
    return "\n".join(lines)


def _annotation_lines(info: SlideInfo) -> list[str]:
    found = info.annotation
    if found is None:
        return _none_found("annotation", info.annotation_looked_for)
    labels = ", ".join(f"{label} ({_plural(n, 'polygon')})" for label, n in found.labels.items())
    lines = [f"annotation  {found.uri}", f"  labels    {labels or 'no polygons'}"]
    for name, count in found.classes.items():
        lines.append(
            f"  class     {name}: {_plural(count, 'polygon')} "
            f"(labels matching {info.label_classes[name]})"
        )
    if found.unmatched:
        names = ", ".join(f"{label} ({n})" for label, n in found.unmatched.items())
        lines.append(f"  no class  {names}: these count for no column (add a --class)")
    return lines


def _overlay_lines(info: SlideInfo) -> list[str]:
    found = info.overlay
    if found is None:
        return _none_found("overlay", info.overlay_looked_for)
    lines = [
        f"overlay     {found.uri}",
        f"            {found.width} x {found.height} px at level 0",
    ]
    if found.mpp is not None:
        source = OVERLAY_SOURCE_TEXT.get(found.mpp_source or "", found.mpp_source or "")
        lines[-1] += f", {_um(found.mpp[0])} x {_um(found.mpp[1])} um/px, {source}"
    if found.warning:
        lines.append(f"  warning   {found.warning}")
    if found.problem:
        lines.append(f"  problem   {_options_named(found.problem)}")
    return lines


def _none_found(kind: str, looked_for: list[str]) -> list[str]:
    lines = [f"{kind:<11} none found; name one with --{kind}"]
    lines.extend(f"  looked at {place}" for place in looked_for)
    return lines


def _options_named(text: str) -> str:
    """``text`` with each WSI_* variable that has an option named as that option."""
    return re.sub(
        r"\bWSI_[A-Z_]+\b",
        lambda found: OPTION_OF.get(found.group(0), found.group(0)),
        text,
    )


def _one_line(error: BaseException) -> str:
    return " ".join(_options_named(str(error)).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wsi-tiles`` with ``argv`` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (WSIError, SettingsError, SelectionError) as error:
        print(f"{PROG}: {_one_line(error)}", file=sys.stderr)
    except BrokenPipeError:  # output piped into a reader that stopped (| head): not an error
        # Python would complain again when it flushes stdout at exit (see the signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # storage: a folder that cannot be written, a network failure
        where = f"{error.filename}: " if error.filename else ""
        print(f"{PROG}: {where}{error.strerror or error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
