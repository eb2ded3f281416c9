"""The pages in a real browser: theme, keyboard, accessibility, screenshots, and nothing
loaded from anywhere but the daemon."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.conftest import (
    AXE,
    SCREENSHOTS,
    api_run,
    logged_in_daemon,
    open_page,
    trigger,
    wait_until,
)
from tests.support.daemon import DaemonProcess, wait_for

pytestmark = pytest.mark.browser

daemon = logged_in_daemon("browser-pages")

PAGES = ["/ui/", "/ui/tasks", "/ui/tasks/hello", "/ui/runs", "/ui/nodes", "/ui/notifications"]
SIZES = [(1280, 800), (390, 844)]
THEMES = ["light", "dark"]


@pytest.fixture(scope="module")
def hello_run(daemon: DaemonProcess) -> str:
    """An ended run of ``hello`` (coloured output on both streams)."""
    run_id = trigger(daemon, "hello")
    wait_for(lambda: api_run(daemon, run_id)["status"] == "ended", timeout=30)
    return run_id


@pytest.fixture(scope="module")
def pages(daemon: DaemonProcess, hello_run: str) -> list[str]:
    """Every page of the dashboard, a run's included, and the page of a missing run."""
    return [*PAGES, f"/ui/runs/{hello_run}", "/ui/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV"]


@pytest.fixture
def theme(driver: WebDriver, daemon: DaemonProcess) -> Iterator[None]:
    """Leaves the browser on the system's theme afterwards."""
    yield
    open_page(driver, daemon, "/ui/")
    driver.execute_script("localStorage.removeItem('runwarden-theme');")


def set_theme(driver: WebDriver, name: str) -> None:
    driver.execute_script("localStorage.setItem('runwarden-theme', arguments[0]);", name)
    driver.refresh()
    wait_until(driver, lambda b: b.find_element(By.ID, "theme-switch").is_displayed())


LOG_BACKGROUND = "return getComputedStyle(document.getElementById('log-lines')).backgroundColor;"


def test_the_theme_switch_flips_data_theme_and_persists(
    driver: WebDriver, daemon: DaemonProcess, hello_run: str, theme: None
) -> None:
    open_page(driver, daemon, f"/ui/runs/{hello_run}")
    switch = driver.find_element(By.ID, "theme-switch")
    assert driver.execute_script("return document.documentElement.dataset.theme;") is None
    seen = []
    for _ in range(2):
        switch.click()
        seen.append(driver.execute_script("return document.documentElement.dataset.theme;"))
    assert seen == ["light", "dark"]
    assert switch.get_attribute("aria-pressed") == "true"
    dark_log = driver.execute_script(LOG_BACKGROUND)
    driver.refresh()
    wait_until(driver, lambda b: b.find_element(By.ID, "theme-switch").is_displayed())
    assert driver.execute_script("return document.documentElement.dataset.theme;") == "dark"
    switch = driver.find_element(By.ID, "theme-switch")
    assert switch.text == "Theme: dark"
    assert driver.execute_script(LOG_BACKGROUND) == dark_log
    switch.click()  # back to auto: the system's, light in headless Chromium
    driver.refresh()
    wait_until(driver, lambda b: b.find_element(By.ID, "theme-switch").is_displayed())
    assert driver.execute_script("return document.documentElement.dataset.theme;") is None
    assert driver.execute_script(LOG_BACKGROUND) != dark_log


def test_slash_focuses_the_search_box(
    driver: WebDriver, daemon: DaemonProcess, hello_run: str
) -> None:
    open_page(driver, daemon, f"/ui/runs/{hello_run}")
    ActionChains(driver).send_keys("/").perform()
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "search"
    assert active.get_attribute("value") == ""  # the key focused, it typed nothing
    ActionChains(driver).send_keys("a/b").perform()
    assert driver.find_element(By.ID, "search").get_attribute("value") == "a/b"


def test_load_earlier_keeps_the_reader_in_place(
    driver: WebDriver, daemon: DaemonProcess, hello_run: str
) -> None:
    run_id = trigger(daemon, "long")
    wait_for(lambda: api_run(daemon, run_id)["status"] == "ended", timeout=30)
    open_page(driver, daemon, f"/ui/runs/{run_id}")
    driver.execute_script("window.notReloaded = true;")
    lines = driver.find_elements(By.CSS_SELECTOR, "#log-lines .ll")
    assert [lines[0].text, lines[-1].text] == ["701\n701", "1200\n1200"]
    anchor = driver.find_element(By.CSS_SELECTOR, '#log-lines .ll[data-n="700"]')
    before = anchor.location["y"]
    driver.find_element(By.CSS_SELECTOR, ".log-earlier a").click()
    wait_until(driver, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#log-lines .ll")) == 1000)
    assert anchor.location["y"] == before, "the lines read stay where they were"
    earlier = driver.find_element(By.CSS_SELECTOR, ".log-earlier a")
    assert earlier.text == "200 earlier lines hidden; load earlier"
    assert earlier.get_attribute("href").endswith(f"/ui/runs/{run_id}?before=200#log")
    assert driver.execute_script("return window.notReloaded === true;")


def test_axe_finds_nothing_serious_or_critical(
    driver: WebDriver, daemon: DaemonProcess, pages: list[str], theme: None
) -> None:
    axe = AXE.read_text()
    problems = []
    for name in THEMES:
        for path in pages:
            open_page(driver, daemon, path)
            set_theme(driver, name)
            driver.execute_script(axe)
            result = driver.execute_async_script(
                """
                var done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] }).then(function (r) {
                  done(r.violations.map(function (v) {
                    return { id: v.id, impact: v.impact, help: v.help,
                             nodes: v.nodes.slice(0, 3).map(function (n) {
                               return n.target.join(" "); }) };
                  }));
                }).catch(function (e) { done({ error: String(e) }); });
                """
            )
            assert not isinstance(result, dict), result
            problems += [
                f"{path} ({name}): {v['impact']} {v['id']}: {v['help']} at {v['nodes']}"
                for v in result
                if v["impact"] in ("serious", "critical")
            ]
    assert not problems, "\n".join(problems)


def test_the_ui_loads_nothing_from_outside_the_daemon(
    driver: WebDriver, daemon: DaemonProcess, pages: list[str]
) -> None:
    outside = []
    for path in pages:
        open_page(driver, daemon, path)
        found = driver.execute_script(
            """
            var bad = [], attrs = ["src", "href", "action", "srcset", "poster", "hx-get",
                                   "hx-post", "data-stream-url", "data-earlier-url"];
            document.querySelectorAll("*").forEach(function (el) {
              attrs.forEach(function (name) {
                var value = el.getAttribute(name);
                if (value === null) return;
                if (new URL(value, location.href).origin !== location.origin ||
                    /^\\s*(javascript|data):/i.test(value)) bad.push(name + "=" + value);
              });
            });
            performance.getEntriesByType("resource").forEach(function (entry) {
              if (new URL(entry.name).origin !== location.origin) bad.push(entry.name);
            });
            return bad;
            """
        )
        outside += [f"{path}: {item}" for item in found]
    assert not outside, "\n".join(outside)


def _blank(png: bytes, size: tuple[int, int]) -> str | None:
    """Why a screenshot looks blank or wrong, or None if it shows something."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.size != size:
        return f"size {image.size}, expected {size}"
    colours = image.getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 8:
        return f"only {len(colours)} colours"
    if max(ImageStat.Stat(image).stddev) < 8:
        return "almost uniform"
    return None


def test_screenshots_of_the_overview_a_task_and_a_run(
    driver: WebDriver, daemon: DaemonProcess, hello_run: str, theme: None
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"overview": "/ui/", "task": "/ui/tasks/hello", "run": f"/ui/runs/{hello_run}"}
    problems = []
    try:
        for width, height in SIZES:
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            )
            for name in THEMES:
                for page, path in shots.items():
                    open_page(driver, daemon, path)
                    set_theme(driver, name)
                    png = driver.get_screenshot_as_png()
                    target: Path = SCREENSHOTS / f"{page}-{width}x{height}-{name}.png"
                    target.write_bytes(png)
                    if (why := _blank(png, (width, height))) is not None:
                        problems.append(f"{target.name}: {why}")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not problems, problems


def test_many_page_loads_never_stall_on_leftover_streams(
    driver: WebDriver, daemon: DaemonProcess, pages: list[str]
) -> None:
    # Every page opens a run-event stream; Chromium allows six connections per host over
    # HTTP/1.1, so a stream left open by each page left behind stalled the 36th load.
    driver.set_page_load_timeout(10)
    try:
        for _ in range(6):
            for path in pages:
                open_page(driver, daemon, path)
    finally:
        driver.set_page_load_timeout(30)
