"""/docs works with no internet: every file its page loads is served by runwarden."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from app.openapi import DOCS_ASSETS_DIR
from tests.support.daemon import DaemonProcess, module_daemon

daemon = module_daemon('[tasks.alpha]\nrun = "true"\n', "docs")

_URL = re.compile(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""")


def test_the_docs_page_references_no_external_url(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        page = client.get("/docs")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    assert "http://" not in page.text.replace(daemon.url, "")
    assert "https://" not in page.text
    assert "//" not in "".join(_URL.findall(page.text))  # no protocol-relative URL either


def test_every_file_the_page_references_is_served(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        page = client.get("/docs").text
        references = _URL.findall(page)
        assert len(references) == 4  # favicon, stylesheet, two scripts
        for reference in references:
            assert reference.startswith("/docs/assets/"), reference
            response = client.get(reference, headers={"Authorization": ""})  # public
            assert response.status_code == 200, reference
            shipped = DOCS_ASSETS_DIR / Path(reference).name
            assert response.content == shipped.read_bytes()


def test_the_docs_content_policy_allows_only_this_origin(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        response = client.get("/docs")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "http" not in policy  # no CDN host allowed


def test_the_vendored_files_match_their_recorded_checksums() -> None:
    notes = (DOCS_ASSETS_DIR / "VENDORED.md").read_text()
    rows = re.findall(r"^\| (\S+) \| ([0-9a-f]{64}) \|$", notes, re.MULTILINE)
    assert len(rows) == 4
    for name, digest in rows:
        assert hashlib.sha256((DOCS_ASSETS_DIR / name).read_bytes()).hexdigest() == digest
    assert "Apache License" in (DOCS_ASSETS_DIR / "LICENSE").read_text()
