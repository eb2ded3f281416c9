"""The pages under ``--root-path``: every link, form, fragment URL and redirect keeps it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.daemon import DaemonProcess, start_daemon
from tests.ui.html import page_checks

CONFIG = """
[tasks.quick]
run = "true"
"""
ROOT = "/rw"


@pytest.fixture(scope="module")
def daemon(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    workdir = tmp_path_factory.mktemp("ui_root")
    config = workdir / "runwarden.toml"
    config.write_text(CONFIG)
    started = start_daemon(config, module_database_url, workdir, args=["--root-path", ROOT])
    try:
        yield started
    finally:
        started.terminate()


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/tasks", "/ui/tasks/quick?limit=5", "/ui/runs", "/ui/nodes"]
)
def test_every_url_of_a_page_is_under_the_root_path(client: httpx.Client, path: str) -> None:
    assert client.post(f"{ROOT}/api/tasks/quick/run", params={"wait": "true"}).is_success

    doc = page_checks(client.get(ROOT + path))

    urls = [str(a["href"]) for a in doc.select("main a[href], nav a[href]")]
    urls += [str(f["action"]) for f in doc.select("form[action]")]
    urls += [str(e["hx-get"]) for e in doc.select("[hx-get]")]
    urls += [str(i["value"]) for i in doc.select("input[name=next]")]
    assert urls
    for url in urls:
        assert url == f"{ROOT}/ui" or url.startswith(f"{ROOT}/ui/"), url
        assert not url.startswith(f"{ROOT}{ROOT}"), url


def test_a_form_comes_back_under_the_root_path(client: httpx.Client) -> None:
    response = client.post(f"{ROOT}/ui/tasks/quick/run", data={"next": f"{ROOT}/ui/tasks?q=q"})

    assert response.status_code == 303
    assert response.headers["location"] == f"{ROOT}/ui/tasks?q=q"
