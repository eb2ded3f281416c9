"""Headless Debian Chromium driven by Selenium through Debian's chromedriver.

Nothing is downloaded: the driver and the browser are the Debian packages (``.ci/run``
installs ``chromium`` and ``chromium-driver`` when they are missing), and ``SE_OFFLINE``
keeps Selenium Manager from looking for others. Each session gets a fresh profile in a
temporary directory; the browser is quit in the fixture's finalizer.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.daemon import DaemonProcess, running_daemon

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".runwarden" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
]

# Tasks the browser tests run. "counting" writes a line every 0.15 s for 9 s (long enough
# to open its page while it runs, and to overflow the log box so scrolling means something);
# its last line is coloured and carries markup that must stay text.
CONFIG = r"""
[tasks.counting]
run = '''
for i in $(seq 1 60); do echo line $i; sleep 0.15; done
printf '\033[32mdone <script>window.pwned = 1</script>\033[0m\n'
'''

[tasks.sleeper]
run = "echo pid $$; exec sleep 120"
graceful_stop = "1s"

[tasks.burst]
run = "sleep 3; seq 1 6000"

[tasks.long]
run = "seq 1 1200"

[tasks.hello]
run = '''
echo hello
printf '\033[1;34mbuilding\033[0m step 1 of 3\n'
printf '\033[33mwarning:\033[0m cache is cold\n' >&2
seq 1 40
printf '\033[32mok\033[0m all done\n'
'''
cron = "0 3 * * *"
description = "A small build with coloured output"
"""


@pytest.fixture(scope="session")
def driver() -> Iterator[WebDriver]:
    """One headless Chromium for the session, with a fresh profile."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing = "Debian's chromium and chromium-driver are not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run installs them with apt-get")  # never skip in CI
        pytest.skip(f"{missing} (apt-get install -y chromium chromium-driver)")
    profile = tempfile.TemporaryDirectory(prefix="runwarden-chromium-")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in [*FLAGS, f"--user-data-dir={profile.name}"]:
            options.add_argument(flag)
        service = Service(str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
        browser = webdriver.Chrome(service=service, options=options)
    try:
        browser.set_script_timeout(60)
        browser.set_page_load_timeout(30)
        yield browser
    finally:
        browser.quit()
        profile.cleanup()


def log_in(browser: WebDriver, daemon: DaemonProcess) -> None:
    """Log the browser in through ``/ui/login`` with the daemon's token, as a person does."""
    assert daemon.token, "the daemon must run with auth on and a known token"
    browser.delete_all_cookies()
    browser.get(f"{daemon.url}/ui/login")
    field = browser.find_element("name", "token")
    field.send_keys(daemon.token)
    field.find_element("xpath", "ancestor::form//button[@type='submit']").click()
    wait_until(browser, lambda b: b.get_cookie("runwarden_session") is not None)
    wait_until(browser, lambda b: "/ui/login" not in b.current_url)


def logged_in_daemon(name: str):  # type: ignore[no-untyped-def]
    """A module-scoped daemon serving :data:`CONFIG`, auth on, the browser logged in."""

    @pytest.fixture(scope="module")
    def daemon(
        module_database_url: str, tmp_path_factory: pytest.TempPathFactory, driver: WebDriver
    ) -> Iterator[DaemonProcess]:
        with running_daemon(CONFIG, module_database_url, tmp_path_factory.mktemp(name)) as started:
            log_in(driver, started)
            yield started
            # Close the page's streams first: the daemon's graceful stop waits for them.
            driver.get("about:blank")

    return daemon


def trigger(daemon: DaemonProcess, task: str) -> str:
    """Trigger ``task`` through the API; the run id."""
    with daemon.client() as client:
        response = client.post(f"/api/tasks/{task}/run")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def api_run(daemon: DaemonProcess, run_id: str) -> dict[str, Any]:
    with daemon.client() as client:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
    return run


def wait_until(
    browser: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 10
) -> Any:
    """Bounded wait for ``condition(browser)`` to be truthy; its value."""
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


def open_page(browser: WebDriver, daemon: DaemonProcess, path: str) -> None:
    """Load ``path`` and wait until ui.js has run (it shows the theme switch)."""
    browser.get(daemon.url + path)
    wait_until(browser, lambda b: b.find_element("id", "theme-switch").is_displayed())


def visible(element: WebElement) -> bool:
    return bool(element.is_displayed())


def wait_http(url: str, timeout: float = 10) -> None:
    """Until ``url`` answers at all (a restarted daemon)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")
