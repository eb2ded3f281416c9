"""Live behaviour in a real browser: fragments refreshed by run events, the log followed
through its stream, stop from the page, the reconnect banner."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.conftest import (
    CONFIG,
    api_run,
    log_in,
    logged_in_daemon,
    open_page,
    trigger,
    wait_until,
)
from tests.support.daemon import DaemonProcess, start_daemon, wait_for

pytestmark = pytest.mark.browser

daemon = logged_in_daemon("browser-live")
TOKEN = "rw_browser-live-restart-token"


def log_numbers(browser: WebDriver) -> list[int]:
    return [
        int(n)
        for n in browser.execute_script(
            "return Array.from(document.querySelectorAll('#log-lines .ll'))"
            ".map(function (e) { return e.getAttribute('data-n'); });"
        )
    ]


def test_a_run_triggered_through_the_api_appears_without_a_reload(
    driver: WebDriver, daemon: DaemonProcess
) -> None:
    open_page(driver, daemon, "/ui/runs")
    driver.execute_script("window.notReloaded = true;")
    run_id = trigger(daemon, "hello")
    wait_until(driver, lambda b: run_id in b.find_element(By.ID, "main").text, timeout=10)
    assert driver.execute_script("return window.notReloaded === true;")


def test_ticked_rows_hold_the_runs_table_until_untick(
    driver: WebDriver, daemon: DaemonProcess
) -> None:
    first = trigger(daemon, "hello")
    wait_for(lambda: api_run(daemon, first)["status"] == "ended", timeout=30)
    open_page(driver, daemon, "/ui/runs")
    box = driver.find_element(By.CSS_SELECTOR, f"input[type=checkbox][value='{first}']")
    box.click()
    held = trigger(daemon, "hello")
    wait_for(lambda: api_run(daemon, held)["status"] == "ended", timeout=30)
    # Events arrived, but the table with a ticked row is not swapped under the reader.
    time.sleep(2)
    assert held not in driver.find_element(By.ID, "main").text
    assert box.is_selected()
    box.click()  # untick: the next change refreshes the table
    after = trigger(daemon, "hello")
    wait_until(driver, lambda b: after in b.find_element(By.ID, "main").text, timeout=10)
    assert held in driver.find_element(By.ID, "main").text


def test_a_running_runs_page_shows_live_log_lines(driver: WebDriver, daemon: DaemonProcess) -> None:
    run_id = trigger(daemon, "counting")
    wait_for(lambda: api_run(daemon, run_id)["status"] == "running", timeout=10)
    open_page(driver, daemon, f"/ui/runs/{run_id}")
    rendered = log_numbers(driver)
    assert len(rendered) < 60, "the run should still be writing"
    # Lines the server did not render arrive through the stream, in order, once each.
    wait_until(driver, lambda b: len(log_numbers(b)) >= len(rendered) + 5, timeout=10)
    numbers = log_numbers(driver)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    follow = driver.find_element(By.CSS_SELECTOR, ".log-follow")
    assert follow.is_displayed()
    assert follow.get_attribute("aria-pressed") == "true"

    # Scrolling up pauses following; "Jump to end" resumes it.
    wait_until(
        driver,
        lambda b: b.execute_script(
            "var l = document.getElementById('log-lines');"
            "return l.scrollHeight > l.clientHeight + 50;"
        ),
    )
    driver.execute_script("document.getElementById('log-lines').scrollTop = 0;")
    wait_until(driver, lambda b: follow.get_attribute("aria-pressed") == "false")
    jump = driver.find_element(By.CSS_SELECTOR, ".log-jump")
    assert jump.is_displayed()
    top = driver.execute_script("return document.getElementById('log-lines').scrollTop;")
    assert top == 0, "a paused log does not scroll by itself"
    jump.click()
    wait_until(driver, lambda b: follow.get_attribute("aria-pressed") == "true")

    # The end: every line, the coloured one as classes and text, and "Stream ended".
    status = driver.find_element(By.CSS_SELECTOR, ".log-status")
    wait_until(driver, lambda b: "Stream ended" in status.text, timeout=20)
    assert log_numbers(driver)[-1] == 60
    last = driver.find_elements(By.CSS_SELECTOR, "#log-lines .ll .lt")[-1]
    assert last.text == "done <script>window.pwned = 1</script>"
    assert last.find_element(By.CSS_SELECTOR, "span").get_attribute("class") == "ansi-fg-2"
    assert driver.execute_script("return window.pwned === undefined;")
    # The facts refreshed from run events: the run is shown as ended without a reload.
    wait_until(
        driver,
        lambda b: (
            b.find_element(By.CSS_SELECTOR, "[data-run-status]").get_attribute("data-run-status")
            == "success"
        ),
    )


def test_the_page_keeps_at_most_5000_live_lines(driver: WebDriver, daemon: DaemonProcess) -> None:
    run_id = trigger(daemon, "burst")  # silent for 3 s, then 6,000 lines at once
    wait_for(lambda: api_run(daemon, run_id)["status"] == "running", timeout=10)
    open_page(driver, daemon, f"/ui/runs/{run_id}")
    wait_until(driver, lambda b: (log_numbers(b) or [0])[-1] == 5999, timeout=15)
    assert log_numbers(driver) == list(range(1000, 6000))
    earlier = driver.find_element(By.CSS_SELECTOR, ".log-earlier a")
    assert earlier.text == "1000 earlier lines hidden; load earlier"
    assert earlier.get_attribute("href").endswith("?before=1000#log")


def test_stop_from_the_page_ends_the_process(driver: WebDriver, daemon: DaemonProcess) -> None:
    run_id = trigger(daemon, "sleeper")
    wait_for(lambda: api_run(daemon, run_id)["status"] == "running", timeout=10)
    open_page(driver, daemon, f"/ui/runs/{run_id}")
    first_line = wait_until(
        driver, lambda b: re.search(r"pid (\d+)", b.find_element(By.ID, "log-lines").text)
    )
    pid = int(first_line.group(1))
    assert Path(f"/proc/{pid}").exists()
    # Its duration ticks every second while it runs.
    ticking = driver.find_element(By.CSS_SELECTOR, "[data-elapsed-since]")
    shown = ticking.text
    assert re.fullmatch(r"\d+ s", shown), shown
    wait_until(driver, lambda b: ticking.text != shown, timeout=3)
    driver.find_element(By.XPATH, "//form[contains(@action, '/stop')]//button").click()
    wait_until(driver, lambda b: b.current_url.endswith(f"/ui/runs/{run_id}"))
    run = wait_for(
        lambda: (found := api_run(daemon, run_id))["status"] == "ended" and found, timeout=15
    )
    assert run["end_reason"] == "stopped"
    wait_for(lambda: not _alive(pid), timeout=5)
    status = driver.find_element(By.CSS_SELECTOR, "[data-run-status]")
    assert status.get_attribute("data-run-status") == "stopped"
    assert not driver.find_elements(By.XPATH, "//form[contains(@action, '/stop')]")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: it runs nothing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


BANNER_WATCH = """
window.bannerShown = false;
new MutationObserver(function (changes) {
  changes.forEach(function (change) {
    if (change.target.id === "live-banner" && !change.target.hidden) window.bannerShown = true;
  });
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["hidden"] });
"""


def test_the_banner_shows_while_live_updates_reconnect(
    driver: WebDriver, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "runwarden.toml"
    config.write_text(CONFIG)
    first = start_daemon(config, database_url, tmp_path, token=TOKEN)
    log_in(driver, first)
    port = int(first.url.rsplit(":", 1)[1])
    run_id = trigger(first, "hello")
    # Records whether the banner is ever shown, from before the page's scripts run.
    watcher = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": BANNER_WATCH}
    )
    try:
        open_page(driver, first, f"/ui/runs/{run_id}")
        banner = driver.find_element(By.ID, "live-banner")
        # A fresh page never shows it, not even for a moment while the stream opens.
        wait_until(driver, lambda b: b.execute_script("return performance.now() > 2500;"))
        assert not banner.is_displayed()
        assert driver.execute_script("return window.bannerShown;") is False
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": watcher["identifier"]}
        )
        first.kill()  # at once: a graceful stop would wait for the page's stream
    wait_until(driver, lambda b: banner.is_displayed(), timeout=10)
    assert "reconnecting" in banner.text
    # The same token on the same database: the session outlives the restart.
    second = start_daemon(config, database_url, tmp_path, token=TOKEN, port=port)
    try:
        wait_until(driver, lambda b: not banner.is_displayed(), timeout=15)
    finally:
        driver.get("about:blank")  # its stream would hold up the graceful stop
        second.terminate()
