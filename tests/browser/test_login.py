"""Logging in through the form, with auth on, in a real browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.conftest import CONFIG, wait_until
from tests.support.daemon import DaemonProcess, start_daemon

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, driver: WebDriver
) -> Iterator[DaemonProcess]:
    """Auth on, with one known token (``daemon.token``)."""
    workdir = tmp_path_factory.mktemp("browser-login")
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    started = start_daemon(config, module_database_url, workdir)
    try:
        yield started
    finally:
        driver.get("about:blank")
        started.terminate()


def test_log_in_through_the_form(driver: WebDriver, daemon: DaemonProcess) -> None:
    assert daemon.token
    driver.delete_all_cookies()
    driver.get(f"{daemon.url}/ui/runs")
    wait_until(driver, lambda b: "/ui/login" in b.current_url)
    field = driver.find_element(By.NAME, "token")
    assert field.get_attribute("type") == "password"
    field.send_keys(daemon.token)
    field.find_element(By.XPATH, "ancestor::form//button[@type='submit']").click()
    wait_until(driver, lambda b: b.current_url.endswith("/ui/runs"))
    assert driver.find_elements(By.XPATH, "//form[contains(@action, '/ui/logout')]")
    cookie = driver.get_cookie("runwarden_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert daemon.token not in driver.page_source
    assert daemon.token not in driver.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + location.href;"
    )
    # The session also authenticates the page's own calls to the API (EventSource, fetch).
    status = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0], { credentials: 'same-origin' })"
        ".then(function (r) { done(r.status); }, function (e) { done(String(e)); });",
        f"{daemon.url}/api/runs/summary",
    )
    assert status == 200
