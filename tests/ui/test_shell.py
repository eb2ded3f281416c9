"""The dashboard's shell: where it lives (also under a root path), its static files, the
display zone and where its forms may send a browser."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from app.ui.safety import same_origin_path
from tests.support.daemon import DaemonProcess, module_daemon, start_daemon

CONFIG = """
[scheduler]
timezone = "Europe/Berlin"

[tasks.alpha]
run = "echo alpha"
"""
VENDOR = Path(__file__).resolve().parents[2] / "app" / "ui" / "static" / "vendor"

daemon = module_daemon(CONFIG, "ui-shell")


@pytest.fixture(scope="module")
def rooted(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("ui-rooted")
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    started = start_daemon(config, module_database_url, workdir, args=["--root-path", "/rw"])
    try:
        yield started
    finally:
        started.terminate()


def test_the_root_redirects_to_the_dashboard_without_a_token(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        client.headers.pop("Authorization")
        answer = client.get("/")
    assert answer.status_code == 302
    assert answer.headers["location"] == "/ui/"


@pytest.mark.parametrize("prefix", ["/rw", ""])
def test_under_a_root_path_every_link_and_asset_carries_it(
    rooted: DaemonProcess, prefix: str
) -> None:
    # A proxy may strip the prefix or pass it on: both reach the same page.
    with rooted.client() as client:
        assert client.get(f"{prefix}/").headers["location"] == "/rw/ui/"
        page = client.get(f"{prefix}/ui/")
        assert page.status_code == 200
        soup = BeautifulSoup(page.text, "html.parser")
        links = [a["href"] for a in soup.find_all("a", href=True)]
        assets = [s["src"] for s in soup.find_all("script", src=True)]
        assets += [s["href"] for s in soup.find_all("link", href=True)]
        assert links
        assert assets
        for url in links + assets:
            if not url.startswith("#"):
                assert url.startswith("/rw/"), url
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_static_files_are_the_vendored_ones_and_cacheable(daemon: DaemonProcess) -> None:
    notes = (VENDOR / "VENDORED.md").read_text()
    with daemon.client() as client:
        client.headers.pop("Authorization")  # static files are public: the login page uses them
        answer = client.get("/ui/static/vendor/htmx-2.0.11.min.js")
    assert answer.status_code == 200
    digest = hashlib.sha256(answer.content).hexdigest()
    assert digest in notes
    assert digest == hashlib.sha256((VENDOR / "htmx-2.0.11.min.js").read_bytes()).hexdigest()
    assert "max-age=3600" in answer.headers["cache-control"]


def test_pages_allow_only_their_own_scripts_and_styles(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        answer = client.get("/ui/")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    soup = BeautifulSoup(answer.text, "html.parser")
    # With no inline script or style allowed, the page must not rely on any.
    assert all(script.get("src") for script in soup.find_all("script"))
    assert not soup.find_all(style=True)
    assert not soup.find_all("style")


def _footer_zone(client_page: str) -> str:
    soup = BeautifulSoup(client_page, "html.parser")
    footer = soup.find("footer")
    assert footer is not None
    return re.sub(r"\s+", " ", footer.get_text(" ", strip=True))


@pytest.mark.parametrize(
    ("cookie", "label"),
    [
        (None, "Europe/Berlin (scheduler)"),
        ("utc", "UTC"),
        ("scheduler", "Europe/Berlin (scheduler)"),
        ("America/New_York", "America/New_York (local)"),
        ("Not/AZone", "Europe/Berlin (scheduler)"),
        ("../../etc/passwd", "Europe/Berlin (scheduler)"),
    ],
)
def test_one_display_zone_labelled_on_every_page(
    daemon: DaemonProcess, cookie: str | None, label: str
) -> None:
    with daemon.client() as client:
        if cookie is not None:
            client.cookies.set("runwarden_zone", cookie)
        page = client.get("/ui/").text
    assert f"Times shown in {label}" in _footer_zone(page)


def test_the_zone_form_works_without_javascript_and_goes_back_only_to_our_pages(
    daemon: DaemonProcess,
) -> None:
    with daemon.client() as client:
        answer = client.get("/ui/prefs", params={"zone": "utc", "next": "/ui/tasks?kind=task"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/tasks?kind=task"
        assert "runwarden_zone=utc" in answer.headers["set-cookie"]
        assert "samesite=strict" in answer.headers["set-cookie"].lower()
        away = client.get("/ui/prefs", params={"zone": "utc", "next": "//evil.example/x"})
        assert away.headers["location"] == "/ui/"


@pytest.mark.parametrize(
    ("target", "root", "expected"),
    [
        ("/ui/runs?status=failed", "", "/ui/runs?status=failed"),
        ("/rw/ui/tasks", "/rw", "/ui/tasks"),
        ("/ui/tasks", "/rw", "/ui/"),
        ("/rwx/ui", "/rw", "/ui/"),
        ("//evil.example/", "", "/ui/"),
        ("/\\evil.example/", "", "/ui/"),
        ("https://evil.example/ui/", "", "/ui/"),
        ("javascript:alert(1)", "", "/ui/"),
        ("ui/tasks", "", "/ui/"),
        ("/ui/\r\nSet-Cookie: x=1", "", "/ui/"),
        ("", "", "/ui/"),
    ],
)
def test_same_origin_path_keeps_only_our_own_paths(target: str, root: str, expected: str) -> None:
    assert same_origin_path(target, root) == expected
