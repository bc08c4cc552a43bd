"""A bounded, seeded mutation fuzz of every slide reader and annotation parser.

Seeds are the real files in ``../shared/data`` and a few small synthetic TIFFs; each case
applies one to three mutations (byte flips, bit flips, "interesting" integers written over
offsets and counts, truncations, insertions, deletions, duplicated chunks; for annotations
also structural edits of the decoded document) and runs every entry point on the result.

Each run must end in one of two ways: it returns, or it raises a ``WSIError`` whose message
starts with the path it was given. Anything else fails the test, and so does a run that
outlives :data:`CASE_SECONDS` (a ``SIGALRM`` in the main thread interrupts it; the test runs
under pytest-timeout's thread method, so the alarm is ours alone). The outcome counts are
printed, so the test's output says what the fuzz exercised.

Slides: the brief for CI is about 30 s, so mutations go where readers look first: the TIFF
header, the IFDs and their tag values (hot ranges found from the intact file), with a share
anywhere; the first 64 KiB of each large slide is a seed of its own, and truncations cut
anywhere. A failing input is kept under ``tmp_path`` and named in the failure message.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import re
import signal
import struct
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import fsspec
import numpy as np
import pytest
import tifffile

from wsi_core.errors import MissingMPPError, WSIError
from wsi_core.parsers import (
    ASAPParser,
    Darwin7JSONParser,
    EMPAIAParser,
    GeoJSONParser,
    open_annotations,
)
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader

SEED = 20240611
#: Wall-clock bound on one run of one entry point on one input, seconds.
CASE_SECONDS = 5.0
SLIDE_CASES = 2000
ANNOTATION_CASES = 1600
#: Bytes of a large slide kept as a seed of its own (its header region).
HEADER_BYTES = 64 * 1024

_MUTATIONS = ["bytes", "bit", "integer", "truncate", "insert", "delete", "duplicate"]
_MUTATION_WEIGHTS = [3, 3, 3, 1, 1, 1, 1]
_INTERESTING = [0, 1, 2, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


class CaseTimeout(BaseException):
    """A case ran past CASE_SECONDS. A BaseException, so that no reader can catch it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread if the block outlives ``seconds``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    """Outcomes per entry point, and the runs that broke the rule."""

    seconds: float = CASE_SECONDS
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def run(self, entry: str, location: str, action: Callable[[], None], note: str) -> None:
        """Run ``action`` on the input at ``location``; record how it ended."""
        started = time.perf_counter()
        try:
            with time_limit(self.seconds):
                action()
        except CaseTimeout:
            self.fail(entry, note, f"no answer within {self.seconds} s")
            outcome = "timeout"
        except WSIError as error:
            outcome = type(error).__name__
            if not str(error).startswith(f"{location}: "):
                self.fail(entry, note, f"message does not start with the path: {error}")
        except Exception as error:
            outcome = f"!{type(error).__name__}"
            frames = traceback.format_exception(type(error), error, error.__traceback__)
            self.fail(entry, note, "".join(frames[-4:]))
        else:
            outcome = "returned"
        self.slowest = max(self.slowest, time.perf_counter() - started)
        self.outcomes.setdefault(entry, Counter())[outcome] += 1

    def fail(self, entry: str, note: str, what: str) -> None:
        self.failures.append(f"{entry} on {note}: {what}")

    def report(self, title: str) -> str:
        lines = [f"{title} (slowest run {self.slowest:.3f} s):"]
        for entry, counts in self.outcomes.items():
            shown = ", ".join(f"{name} {n}" for name, n in counts.most_common())
            lines.append(f"  {entry:<22} {sum(counts.values()):>5} runs: {shown}")
        return "\n".join(lines)


# Mutations ---------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, hot: list[tuple[int, int]]) -> tuple[bytes, str]:
    """``data`` with one to three mutations, and a description of them. Positions fall in
    the ``hot`` byte ranges most of the time, anywhere otherwise."""
    out = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        # Edits in place keep the offsets after them valid, so they reach further into a
        # reader than shifts (insert, delete, duplicate), which break every later offset.
        kind = rng.choices(_MUTATIONS, weights=_MUTATION_WEIGHTS)[0]
        if hot and rng.random() < 0.7:
            start, stop = rng.choice(hot)
            at = rng.randrange(start, max(start + 1, min(stop, len(out))))
        else:
            at = rng.randrange(len(out))
        at = min(at, len(out) - 1)
        if kind == "bytes":
            count = rng.randint(1, 8)
            out[at : at + count] = bytes(rng.randrange(256) for _ in range(count))
        elif kind == "bit":
            out[at] ^= 1 << rng.randrange(8)
        elif kind == "integer":
            width, code = rng.choice([(2, "H"), (4, "I"), (8, "Q")])
            value = rng.choice([*_INTERESTING, len(out), len(out) + 1, rng.randrange(2**32)])
            order = rng.choice("<>")
            out[at : at + width] = struct.pack(order + code, value % (1 << (8 * width)))
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == "delete":
            del out[at : at + rng.randint(1, 64)]
        else:
            source = rng.randrange(len(out))
            out[at:at] = out[source : source + rng.randint(1, 512)]
        done.append(f"{kind}@{at}")
    return bytes(out), " ".join(done)


_JSON_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1e9,
    1e300,
    10**40,
    float("nan"),
    "",
    "x",
    [],
    {},
    [[]],
    [1, 2],
    {"x": 1},
    {"x": 1, "y": "a"},
]


def mutate_json(rng: random.Random, document: Any) -> tuple[Any, str]:
    """``document`` with one node (anywhere in it) replaced, deleted or duplicated."""
    nodes: list[tuple[Any, Any]] = []  # (container, key)

    def walk(value: Any, depth: int) -> None:
        if depth > 12:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                nodes.append((value, key))
                walk(item, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value[:50]):
                nodes.append((value, index))
                walk(item, depth + 1)

    walk(document, 0)
    if not nodes:
        return rng.choice(_JSON_VALUES), "replace-document"
    container, key = rng.choice(nodes)
    action = rng.choice(["replace", "replace", "delete", "duplicate"])
    if action == "replace":
        container[key] = rng.choice(_JSON_VALUES)
    elif action == "delete":
        del container[key]
    elif isinstance(container, list):
        container.insert(key, container[key])
    else:
        container[f"{key}_copy"] = container[key]
    return document, f"{action}:{key!r}"


_XML_VALUES = ["", "None", "-5", "1e300", "nan", "inf", "abc", "1,5", "1.2,5", "9" * 400, "&amp;"]


def mutate_xml(rng: random.Random, text: str) -> tuple[str, str]:
    """``text`` with one attribute value replaced by a troublesome one."""
    values = list(re.finditer(r'="[^"]*"', text))
    if not values:
        return text, "no-attribute"
    found = rng.choice(values)
    value = rng.choice(_XML_VALUES)
    return f'{text[: found.start()]}="{value}"{text[found.end() :]}', f"attribute@{found.start()}"


# Seeds ----------------------------------------------------------------------------------------


def hot_ranges(data: bytes) -> list[tuple[int, int]]:
    """The TIFF header and every IFD with the 512 bytes after it (where tag values usually
    are), as tifffile finds them in the intact file."""
    ranges = [(0, 16)]
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        pages = list(tif.pages)
        offsets = [page.offset for page in pages]
        offsets += [offset for page in pages for offset in getattr(page, "subifds", None) or ()]
    ranges += [(offset, offset + 1024) for offset in offsets]
    return ranges


def slide_seeds(shared_data: Path, folder: Path) -> dict[str, tuple[bytes, list[tuple[int, int]]]]:
    """Seed name -> (bytes, hot ranges)."""
    seeds: dict[str, bytes] = {}
    for name in ("slides/boxes.tiff", "masks/mask_full_res.tif"):
        seeds[Path(name).name] = (shared_data / name).read_bytes()
    for name in ("slides/CMU-1-Small-Region.svs", "slides/tcga-cr-7395-01a-01-ts1.svs"):
        whole = (shared_data / name).read_bytes()
        seeds[Path(name).name] = whole
        seeds[f"head-{Path(name).name}"] = whole[:HEADER_BYTES]
    image = np.random.default_rng(SEED).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    layouts: dict[str, dict[str, Any]] = {
        "subifds.tiff": {"tile": (64, 64)},
        "pages.tiff": {"tile": (64, 64), "subifds": False},
        "strips.tiff": {"tile": None},
        "ome.ome.tiff": {"tile": (64, 64), "ome": True},
        "jpeg.tiff": {"tile": (64, 64), "compression": "jpeg"},
    }
    for name, options in layouts.items():
        seeds[name] = write_pyramid_tiff(folder / name, image, 0.5, 3, **options).read_bytes()
    tifffile.imwrite(folder / "big.tiff", image[..., 0], bigtiff=True, tile=(32, 32))
    seeds["big.tiff"] = (folder / "big.tiff").read_bytes()
    result = {}
    for name, data in seeds.items():
        try:
            hot = hot_ranges(data)
        except Exception:  # the 64 KiB heads: their IFDs lie past the cut
            hot = [(0, 16)]
        result[name] = (data, hot)
    return result


def annotation_seeds(shared_data: Path) -> dict[str, bytes]:
    seeds = {
        path.name: path.read_bytes()
        for path in sorted((shared_data / "annotations").rglob("*"))
        if path.is_file() and path.suffix in (".xml", ".json", ".geojson")
    }
    seeds["items.json"] = json.dumps(
        {
            "items": [
                {"name": "tumor", "type": "polygon", "coordinates": [[0, 0], [9, 0], [9, 9]]},
                {"name": "cell", "type": "point", "coordinates": [3, 4]},
                {"name": "roi", "type": "rectangle", "upper_left": [1, 1], "width": 5, "height": 5},
                {"items": [{"name": "nested", "type": "point", "coordinates": [1, 1]}]},
            ]
        }
    ).encode()
    return seeds


# Entry points -------------------------------------------------------------------------------


def use_slide(opener: Callable[[str], Any], location: str) -> Callable[[], None]:
    def run() -> None:
        with opener(location) as slide:
            dimensions = slide.level_dimensions
            assert len(dimensions) == slide.level_count == len(slide.level_downsamples)
            with contextlib.suppress(MissingMPPError):  # documented, not the end of the case
                assert min(slide.mpp) > 0
            tile = slide.read_tile(0, 0, 256, 256, 0)
            assert tile.shape == (256, 256, 3) and tile.dtype == np.uint8
            last = slide.level_count - 1
            assert slide.read_tile(0, 0, 64, 64, last).shape == (64, 64, 3)
            width, height = dimensions[last]
            region = slide.read_level_region(last, 0, 0, min(width, 16), min(height, 16))
            assert region.shape[:2] == (min(height, 16), min(width, 16))

    return run


def use_annotations(opener: Callable[[str], Any], location: str) -> Callable[[], None]:
    def run() -> None:
        parser = opener(location)
        list(parser.get_polygons())
        list(parser.get_points())
        parser.class_labels()
        parser.label_counts()
        parser.get_class_polygons(".*")

    return run


@pytest.fixture
def quiet() -> Iterator[None]:
    """tifffile logs each damaged tag it skips; warnings (repairs) are expected."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logger.setLevel(level)


def _failure_message(tally: Tally, kept: Path) -> str:
    shown = "\n".join(tally.failures[:10])
    return f"{len(tally.failures)} runs broke the rule (inputs kept in {kept}):\n{shown}"


@pytest.mark.timeout(300, method="thread")  # the per-case alarm is ours: no SIGALRM here
def test_fuzz_slides(shared_data, tmp_path, capsys, quiet):
    rng = random.Random(SEED)
    seeds = slide_seeds(shared_data, tmp_path)
    names = sorted(seeds)
    memory = fsspec.filesystem("memory")
    folder = f"/wsi-fuzz-{uuid.uuid4().hex[:12]}"
    tally = Tally()
    started = time.perf_counter()
    try:
        for case in range(SLIDE_CASES):
            name = names[case % len(names)]
            data, hot = seeds[name]
            mutated, note = mutate(rng, data, hot)
            path = tmp_path / f"case{case:04d}-{name}"
            path.write_bytes(mutated)
            note = f"{path.name} ({note})"
            before = len(tally.failures)
            tally.run("open_slide", str(path), use_slide(open_slide, str(path)), note)
            tally.run("TiffReader", str(path), use_slide(TiffReader, str(path)), note)
            if case % 4 == 0:  # a share through a URL: the fsspec path of TiffReader
                url = f"memory://{folder}/{path.name}"
                memory.pipe_file(url, mutated)
                tally.run("open_slide(url)", url, use_slide(open_slide, url), note)
            if len(tally.failures) == before:
                path.unlink()  # keep only the inputs that broke the rule
    finally:
        if memory.exists(folder):
            memory.rm(folder, recursive=True)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print("\n" + tally.report(f"slide fuzz: {SLIDE_CASES} inputs in {elapsed:.1f} s"))
    assert not tally.failures, _failure_message(tally, tmp_path)


@pytest.mark.timeout(300, method="thread")
def test_fuzz_annotations(shared_data, tmp_path, capsys, quiet):
    rng = random.Random(SEED + 1)
    seeds = annotation_seeds(shared_data)
    names = sorted(seeds)
    openers: dict[str, Callable[[str], Any]] = {
        "open_annotations": open_annotations,
        "ASAPParser": ASAPParser,
        "GeoJSONParser": GeoJSONParser,
        "Darwin7JSONParser": Darwin7JSONParser,
        "EMPAIAParser": EMPAIAParser,
    }
    tally = Tally()
    started = time.perf_counter()
    for case in range(ANNOTATION_CASES):
        name = names[case % len(names)]
        data = seeds[name]
        if case % 2 == 0:
            mutated, note = mutate(rng, data, [])
        elif name.endswith(".xml"):
            text, note = mutate_xml(rng, data.decode())
            mutated = text.encode()
        else:
            document, note = mutate_json(rng, json.loads(data))
            mutated = json.dumps(document).encode()
        path = tmp_path / f"case{case:04d}-{name}"
        path.write_bytes(mutated)
        note = f"{path.name} ({note})"
        before = len(tally.failures)
        for entry, opener in openers.items():
            tally.run(entry, str(path), use_annotations(opener, str(path)), note)
        if len(tally.failures) == before:
            path.unlink()
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print("\n" + tally.report(f"annotation fuzz: {ANNOTATION_CASES} inputs in {elapsed:.1f} s"))
    assert not tally.failures, _failure_message(tally, tmp_path)


def test_time_limit_interrupts_a_hang():
    """The per-case bound works: a loop that never ends is stopped, as a CaseTimeout."""
    tally = Tally(seconds=0.2)

    def hang() -> None:
        while True:
            pass

    tally.run("hang", "nowhere", hang, "a loop")
    assert tally.outcomes["hang"] == Counter({"timeout": 1})
    assert tally.failures == ["hang on a loop: no answer within 0.2 s"]
