"""The Dagster UI as a user meets it, in a real browser.

``make run`` on the demo slides, then ``dagster dev`` (webserver and daemon) in a temporary
DAGSTER_HOME on a free loopback port, then headless Chromium, driven by selenium through
Debian's ``chromedriver``: open the asset graph, open the partitions of
``annotation_coverage``, launch one partition's materialization by clicking, as a user
would, and open that materialization's event: its picture, its preview and its figures must
be on the screen. Every click goes through the browser; Dagster's GraphQL API is only used
to wait for the run and to know what the event holds.

Screenshots of the asset graph, of the materialization and of its picture are written to the
test's temporary folder on every run; with ``UPDATE_DOCS_SCREENSHOTS=1`` they also replace the ones
in ``docs/images/`` that the README shows.

Select with ``-m browser``. Skips where Chromium or its driver cannot be found, except in CI
(``CI`` set), where that is a failure: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from test_run_demo import environment

from wsi_core.tables import TABLES

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

PROJECT = Path(__file__).resolve().parents[2]
DOCS_IMAGES = PROJECT / "docs" / "images"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = "wsi_tiles"
GROUP = "tiles"
TABLE = "annotation_coverage"
SLIDE = "demo_slide_01"
#: The demo at a quarter of its size with 64 px tiles: the same 12 x 8 grid of tiles as the
#: full-size demo of ``make run`` with its default 256 px tiles, built in a few seconds.
DEMO_SCALE = "0.25"
TILING = {"WSI_TILE_EXTENT": "64", "WSI_STRIDE": "64"}
WINDOW = (1400, 900)
#: Chromium as root in a container, with no network beyond loopback: no sandbox (root), no
#: GPU, /tmp rather than a small /dev/shm, and none of the background fetches (updates,
#: sync, component downloads) that a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)
#: How long the UI may take to show something after the data behind it exists.
UI_SECONDS = 30
RUN_SECONDS = 180
T = TypeVar("T")


# ----------------------------------------------------------------------------- the browser
@dataclass(frozen=True)
class Chromium:
    """Paths of the browser and of its WebDriver."""

    browser: str
    driver: str


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's ``chromium`` and ``chromium-driver``. Where either is missing the test skips
    saying how to install them, but fails in CI, which must run it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return Chromium(browser, driver)
    missing = " and ".join(
        name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path
    )
    reason = (
        f"{missing} not found on PATH: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run does this)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser(chromium: Chromium, tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile. The driver path is given, so selenium never
    runs Selenium Manager (which would try to download a driver). Quit even on failure."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# ----------------------------------------------------------------------------- dagster dev
@dataclass(frozen=True)
class DagsterDev:
    """A running ``dagster dev``: its URL, DAGSTER_HOME and log file."""

    url: str
    home: Path
    log: Path

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; an answer with errors fails the test."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """A port that nothing listens on now, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll(what: str, seconds: float, probe: Callable[[], T | None]) -> T:
    """``probe()`` every half second until it returns something other than None."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.5)


def interruptible() -> None:
    """In the child before exec: Ctrl-C (SIGINT) back to its default. A shell runs background
    jobs with SIGINT ignored, and dagster dev maps SIGTERM to whatever SIGINT does, so a test
    run from such a job could otherwise only kill dagster dev, never stop it cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 30) -> None:
    """Ctrl-C to the whole group, as in a terminal: dagster dev stops its webserver, daemon
    and code server. Whatever is left after ``grace`` seconds (a run's worker, a server that
    hangs) is killed."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # raised when everything stopped already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def dagster_dev(chromium: Chromium, tmp_path: Path) -> Iterator[DagsterDev]:
    """``make run`` (every table of the demo slides built), then ``dagster dev`` over the same
    instance, with the project's dagster.yaml and workspace.yaml, until its code location is
    loaded. ``chromium`` is requested first so that a machine without it skips at once."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(PROJECT / name, home / name)
    env = {**environment(home), **TILING}
    built = subprocess.run(
        [sys.executable, "-m", "wsi_assets.run_demo", "--scale", DEMO_SCALE],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr

    port = free_port()
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [DAGSTER, "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=home,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole, even on failure
            preexec_fn=interruptible,  # noqa: PLW1509 (no threads have started in this child)
        )
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, log)
    try:

        def loaded() -> bool | None:
            assert process.poll() is None, f"dagster dev exited:\n{dev.log_tail()}"
            try:
                data = dev.graphql(
                    "{ workspaceOrError { ... on Workspace { locationEntries {"
                    " name loadStatus locationOrLoadError { __typename"
                    " ... on PythonError { message } } } } } }"
                )
            except (urllib.error.URLError, ConnectionError):
                return None  # the webserver is not listening yet
            entries = data["workspaceOrError"].get("locationEntries", [])
            for entry in entries:
                if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                    location = entry["locationOrLoadError"]
                    assert location["__typename"] == "RepositoryLocation", location
                    return True
            return None

        poll("the code location to load in dagster dev", 120, loaded)
        yield dev
    finally:
        stop_process_group(process)


# ----------------------------------------------------------------------------- the page
class Page:
    """The browser on the Dagster UI: explicit waits on what a user sees, screenshots."""

    def __init__(self, driver: WebDriver, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self.wait = WebDriverWait(driver, UI_SECONDS, poll_frequency=0.25)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def visible(self, xpath: str) -> WebElement:
        return self.wait.until(ec.visibility_of_element_located((By.XPATH, xpath)), xpath)

    def click(self, xpath: str) -> WebElement:
        element = self.wait.until(ec.element_to_be_clickable((By.XPATH, xpath)), xpath)
        element.click()
        return element

    def screenshot(self, name: str, docs: bool = True) -> Path:
        """The window as ``<name>.png`` in the test's folder and, when asked (and ``docs``),
        in docs/images (as 256 colours: a UI screenshot stays sharp and small)."""
        png = self.driver.get_screenshot_as_png()
        path = self.shots / f"{name}.png"
        path.write_bytes(png)
        if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            image = Image.open(io.BytesIO(png)).convert("RGB")
            image.quantize(256, dither=Image.Dither.NONE).save(
                DOCS_IMAGES / f"{name}.png", optimize=True
            )
        return path


def text_is(value: str) -> str:
    """XPath predicate: the element's own text is ``value``."""
    return f"[normalize-space(text())='{value}']"


def metadata_row(label: str) -> str:
    """XPath of the metadata table row whose first cell is ``label``."""
    return f"//tr[td[1][normalize-space(.)='{label}']]"


# ----------------------------------------------------------------------------- GraphQL
RUN = """query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  runId status tags { key value } assetSelection { path } } } }"""
MATERIALIZATION = """query Latest($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(partitions: [$partition], limit: 1) { runId partition
      metadataEntries { __typename label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
        ... on MarkdownMetadataEntry { mdStr } } } } } }"""
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def finished_run(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    """The run once it has ended (queued for the daemon, then run by it)."""

    def ended() -> dict[str, Any] | None:
        run = dev.graphql(RUN, id=run_id)["runOrError"]
        assert run["__typename"] == "Run", run
        return run if run["status"] in DONE else None

    return poll(f"run {run_id} to end", RUN_SECONDS, ended)


def number_shown(text: str) -> float:
    """A number as the UI prints it (thousands separators)."""
    return float(text.replace(",", "").strip())


# ----------------------------------------------------------------------------- the steps
def open_asset_graph(page: Page) -> None:
    """The asset graph of the tables: every table, each with its three slide partitions."""
    page.open(f"/locations/{LOCATION}/asset-groups/{GROUP}")
    for table in TABLES:
        page.visible(f"//div{text_is(table)}")
    page.visible(f"//a[@href='/assets/{TABLE}?view=partitions']{text_is('3 partitions')}")
    page.screenshot("asset-graph")


def launch_from_partitions(page: Page) -> str:
    """From the graph, the partitions of ``TABLE``; the slide ``SLIDE``; Materialize; the id
    of the run launched (from the toast's link)."""
    page.click(f"//a[@href='/assets/{TABLE}?view=partitions' and not(@target)]")
    page.click(f"(//*{text_is(SLIDE)})[1]")  # the partition list, the only place it is
    page.visible(f"//*{text_is(SLIDE)}/following::*{text_is('Materialized')}")
    page.click("//button[starts-with(normalize-space(.), 'Materialize')]")
    page.visible(f"//*[starts-with(normalize-space(.), 'Launch runs to materialize {TABLE}')]")
    page.visible(f"//*[@role='dialog']//*{text_is(SLIDE)}")  # the slide chosen above
    page.click("//button[normalize-space(.)='Launch 1 run']")
    toast = page.visible("//a[starts-with(@href, '/runs/')][normalize-space(.)='View']")
    return (toast.get_attribute("href") or "").rsplit("/runs/", 1)[-1]


def materialized_by(dev: DagsterDev, run_id: str) -> dict[str, dict[str, Any]]:
    """Waits for the run; checks that it is the UI's run of one slide's ``TABLE`` and that
    the slide's latest materialization is its own; that event's metadata entries by label."""
    run = finished_run(dev, run_id)
    assert run["status"] == "SUCCESS", dev.log_tail()
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags.get("dagster/from_ui") == "true"
    assert tags.get("dagster/partition") == SLIDE
    assert [key["path"] for key in run["assetSelection"]] == [[TABLE]]
    latest = dev.graphql(MATERIALIZATION, path=[TABLE], partition=SLIDE)
    (event,) = latest["assetOrError"]["assetMaterializations"]
    assert event["runId"] == run_id
    return {entry["label"]: entry for entry in event["metadataEntries"]}


def open_event(page: Page, run_id: str) -> None:
    """The Events tab, the slide's newest event (listed first): the one of ``run_id``."""
    page.click(f"//a{text_is('Events')}")
    page.wait.until(ec.url_contains("view=events"))
    page.click(f"(//div[@data-index][.//span{text_is(SLIDE)}])[1]")
    page.visible(
        f"//*[contains(normalize-space(.), 'materialized in run')]"
        f"/a[starts-with(@href, '/runs/{run_id}')]"
    )


def check_preview(page: Page, entries: dict[str, dict[str, Any]]) -> None:
    """The preview: a table with the columns of the stored table's preview."""
    preview = entries["preview"]["mdStr"]
    columns = [c.strip() for c in preview.splitlines()[0].strip("|").split("|")]
    assert "coverage_tumor" in columns
    for column in columns:
        page.visible(f"{metadata_row('preview')}//table//th{text_is(column)}")


def check_figures(page: Page, entries: dict[str, dict[str, Any]]) -> None:
    """Every number of the event, next to its name, as the UI shows it."""
    figures = {
        label: entry.get("intValue", entry.get("floatValue"))
        for label, entry in entries.items()
        if entry["__typename"] in {"IntMetadataEntry", "FloatMetadataEntry"}
    }
    assert figures["dagster/row_count"] == 96  # 12 x 8 tiles
    for label, value in figures.items():
        shown = page.visible(f"{metadata_row(label)}/td[2]").text
        assert number_shown(shown) == pytest.approx(value, rel=1e-3), (label, shown)
    page.screenshot("materialization")


def check_pictures(page: Page, entries: dict[str, dict[str, Any]]) -> None:
    """Every image embedded in the event's markdown, loaded and on screen. The UI shows
    markdown of 1,000 characters or more (any PNG) behind "[Show Markdown]", in a dialog."""
    pictures = [
        label
        for label, entry in entries.items()
        if entry["__typename"] == "MarkdownMetadataEntry" and "data:image/png" in entry["mdStr"]
    ]
    assert pictures, f"no picture in the materialization's metadata: {sorted(entries)}"
    dialog = "//*[@role='dialog']"
    for label in pictures:
        page.click(f"{metadata_row(label)}//*{text_is('[Show Markdown]')}")
        image = page.visible(f"{dialog}//img[starts-with(@src, 'data:image/png')]")
        assert (image.get_attribute("src") or "") in entries[label]["mdStr"]
        assert page.driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", image
        ), f"{label}: the picture did not load"
        page.screenshot("picture" if label == pictures[0] else f"picture-{label}")
        ActionChains(page.driver).send_keys(Keys.ESCAPE).perform()  # closes the dialog
        page.wait.until(ec.invisibility_of_element_located((By.XPATH, dialog)))


# ----------------------------------------------------------------------------- the test
def test_a_partition_launched_from_the_ui_shows_its_picture_preview_and_figures(
    dagster_dev: DagsterDev, browser: WebDriver, tmp_path: Path
) -> None:
    page = Page(browser, dagster_dev.url, tmp_path)
    try:
        open_asset_graph(page)
        run_id = launch_from_partitions(page)
        entries = materialized_by(dagster_dev, run_id)
        open_event(page, run_id)
        check_preview(page, entries)
        check_figures(page, entries)
        check_pictures(page, entries)
    except Exception:
        # What the browser showed, beside the test's other files.
        page.screenshot("failure", docs=False)
        raise
