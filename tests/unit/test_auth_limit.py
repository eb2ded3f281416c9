"""The auth-failure limiter: when a client is limited, when its count expires, its memory."""

from __future__ import annotations

import tracemalloc

from app.auth_limit import FailureLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_limited_at_max_failures_until_its_window_ends() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=3, window=60, clock=clock)
    for _ in range(2):
        limiter.record_failure("10.0.0.1")
        clock.now += 1
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 58  # the window opened at the first failure
    assert limiter.retry_after("10.0.0.2") == 0
    clock.now += 57.5
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") == 0


def test_counts_expire_with_their_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=2, window=60, clock=clock)
    limiter.record_failure("a")
    limiter.record_failure("b")
    clock.now += 60
    limiter.record_failure("a")  # a new window: one failure, not two
    assert limiter.retry_after("a") == 0
    assert len(limiter) == 1  # b's count is gone


def test_when_full_the_client_whose_window_ends_soonest_is_dropped() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=1, max_clients=2, clock=clock)
    for client in ("a", "b", "a", "c"):
        limiter.record_failure(client)
        clock.now += 1
    assert len(limiter) == 2
    assert limiter.retry_after("a") == 0
    assert limiter.retry_after("b") > 0
    assert limiter.retry_after("c") > 0


def test_memory_stays_bounded_under_100_000_addresses() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=3, clock=clock)
    addresses = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(100_000)]

    tracemalloc.start()
    try:
        for address in addresses:
            for _ in range(3):
                limiter.record_failure(address)
            clock.now += 0.0001  # all within one window: nothing expires on its own
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(limiter) == limiter.max_clients == 10_000
    assert limiter.retry_after(addresses[-1]) > 0  # the latest clients are still limited
    # About 100 bytes a client: one small record and the dict slot (the keys are the
    # caller's strings). Unbounded, 100,000 clients would hold several times this.
    assert held < 2_500_000
