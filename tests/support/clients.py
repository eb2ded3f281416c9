"""The ``client`` fixture: an HTTP client, with the token, for the module's ``daemon``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.daemon import DaemonProcess


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    """Each module that talks to a daemon defines ``daemon``; this talks to it."""
    with daemon.client() as c:
        yield c
