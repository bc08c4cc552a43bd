"""The registry: one immutable object per slide, written only where none exists, so that
concurrent writers lose nothing and a key is never given to two files."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.registry import Registration, Registry

SLIDES = [f"batch_{i % 7}/slide {i:04d}.svs" for i in range(400)]


def test_register_lookup_and_a_second_process_sees_the_same(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    held, clashes = registry.register(["a.svs", "f/b.tiff"])
    assert clashes == []
    assert held == {
        "a": Registration("a", "a.svs"),
        slide_key("f/b.tiff"): Registration(slide_key("f/b.tiff"), "f/b.tiff"),
    }
    again = Registry(str(tmp_path))
    assert again.lookup("a") == Registration("a", "a.svs")
    assert again.lookup("nope") is None
    assert set(again.registered()) == {"a", slide_key("f/b.tiff")}
    stored = json.loads((tmp_path / "_registry" / "slides" / "a.json").read_text())
    assert stored == {"format_version": 2, "key": "a", "relpath": "a.svs"}


def test_a_second_file_for_one_key_is_refused_by_name(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    registry.register(["x.svs"])
    held, clashes = registry.register(["x.tiff", "y.svs"])
    assert set(held) == {"y"}
    assert clashes == [
        "x.tiff: would share partition key 'x' with x.svs; rename one of them or move it "
        "into a folder"
    ]
    assert registry.lookup("x") == Registration("x", "x.svs")  # never rewritten
    _, same_tick = Registry(str(tmp_path / "other")).register(["z.svs", "z.tiff"])
    assert same_tick == [
        "z.tiff: would share partition key 'z' with z.svs; rename one of them or move it "
        "into a folder"
    ]


def _register_all(root: str, start: multiprocessing.synchronize.Event, offset: int) -> None:
    start.wait()
    registry = Registry(root)
    order = SLIDES[offset:] + SLIDES[:offset]
    for relpath in order:  # one at a time: as many races as possible
        registry.register([relpath])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_register_all, args=(str(tmp_path), start, offset))
        for offset in (0, 133, 266)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    registry = Registry(str(tmp_path))
    assert set(registry.registered()) == {slide_key(p) for p in SLIDES}
    assert all(registry.lookup(slide_key(p)) == Registration(slide_key(p), p) for p in SLIDES)
    leftovers = [
        p.name for p in (tmp_path / "_registry" / "slides").iterdir() if p.suffix != ".json"
    ]
    assert leftovers == []
