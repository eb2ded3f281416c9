"""Riding out database outages: state changes are retried until they are recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from domain.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0


async def durably(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation`` until the database answers it.

    Only :class:`StoreUnavailable` is retried (with capped exponential backoff); any other
    error is a bug or a conflict and propagates. Each operation is one transaction that
    either happened or did not, so retrying cannot record a change twice. The caller's
    cancellation (shutdown) ends the wait.
    """
    delay = FIRST_DELAY
    failures = 0
    while True:
        try:
            result = await operation()
        except StoreUnavailable as exc:
            failures += 1
            if failures == 1:
                log.warning("%s: database unavailable (%s); retrying", what, exc)
            await sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            continue
        if failures:
            log.info("%s: recorded after %d retries", what, failures)
        return result
