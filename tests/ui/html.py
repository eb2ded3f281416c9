"""Reading dashboard pages in tests: parse, and the checks every page must pass."""

from __future__ import annotations

import httpx
from bs4 import BeautifulSoup, Tag


def soup(response: httpx.Response) -> BeautifulSoup:
    """The page's HTML, parsed."""
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    return BeautifulSoup(response.text, "html.parser")


def page_checks(response: httpx.Response, status: int = 200) -> BeautifulSoup:
    """A whole page: its status, one ``h1``, landmarks, table headers with a scope, every
    ``<time>`` with an ISO UTC ``datetime`` and a title, no inline styles or scripts."""
    assert response.status_code == status, response.text[:500]
    doc = soup(response)
    assert len(doc.find_all("h1")) == 1
    assert doc.find("main") is not None
    assert doc.find("nav") is not None
    assert not doc.select("[style]")
    assert all(script.get("src") for script in doc.find_all("script"))
    for th in doc.select("thead th"):
        assert th.get("scope") == "col", th
    for time in doc.find_all("time"):
        assert str(time["datetime"]).endswith("Z"), time
        assert time.get("title"), time
    return doc


def rows(table: Tag | None) -> list[Tag]:
    """The body rows of a table, without the "nothing here" row."""
    assert table is not None
    return [tr for tr in table.select("tbody tr") if not tr.select("td.empty")]


def text(tag: Tag | None) -> str:
    assert tag is not None
    return " ".join(tag.get_text(" ").split())
