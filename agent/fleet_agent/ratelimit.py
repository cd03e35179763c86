"""Token buckets that keep one MQTT connection under AWS IoT Core's per-connection limits.

AWS throttles (and may disconnect) a client publishing more than 100 messages/s or
512 KiB/s on one connection; draining a backlog after an outage must stay below both.
A token bucket alone allows its burst on top of the rate in some one-second window
(100/s with a burst of 10 can put 110 publishes in one second), so a sliding one-second
window caps the count and bytes exactly; the bucket only spreads publishes evenly.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

AWS_MAX_PUBLISH_PER_S = 100.0
AWS_MAX_BYTES_PER_S = 512 * 1024
AWS_MAX_PAYLOAD = 128 * 1024
WINDOW_SPAN = 1.05


class TokenBucket:
    """Classic token bucket; ``capacity`` bounds the burst."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def available(self, amount: float = 1.0) -> bool:
        self._refill()
        return self._tokens >= min(amount, self.capacity)

    def take(self, amount: float = 1.0) -> None:
        """Spend tokens (may go negative for an item larger than the burst: it then waits)."""
        self._refill()
        self._tokens -= amount

    def wait_time(self, amount: float = 1.0) -> float:
        self._refill()
        missing = min(amount, self.capacity) - self._tokens
        return max(0.0, missing / self.rate)


class SlidingWindow:
    """At most ``max_count`` events and ``max_bytes`` bytes in any window of ``span`` s."""

    def __init__(
        self,
        max_count: int,
        max_bytes: float,
        span: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.span = span
        self._clock = clock
        self._events: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def _prune(self, now: float) -> None:
        events = self._events
        while events and events[0][0] <= now - self.span:
            self._bytes -= events.popleft()[1]

    def allows(self, size: int) -> bool:
        self._prune(self._clock())
        if not self._events:
            return True  # a lone item larger than max_bytes must still get out eventually
        return len(self._events) < self.max_count and self._bytes + size <= self.max_bytes

    def record(self, size: int) -> None:
        self._events.append((self._clock(), size))
        self._bytes += size

    def restamp_last(self) -> None:
        """Move the newest event to now: it left when the write returned, not when allowed.

        Under load a thread can stall between taking a slot and the socket write; counting
        from the write keeps every one-second window of writes within the limit.
        """
        if self._events:
            self._events[-1] = (self._clock(), self._events[-1][1])

    def wait_time(self, size: int) -> float:
        """Seconds until an item of ``size`` bytes fits the window."""
        now = self._clock()
        if self.allows(size):
            return 0.0
        count, total = len(self._events), self._bytes
        for at, item_size in self._events:
            count -= 1
            total -= item_size
            if count == 0 or (count < self.max_count and total + size <= self.max_bytes):
                return max(0.0, at + self.span - now)
        return 0.0


class PublishLimiter:
    """Both AWS limits at once; ``enabled=False`` lets benchmarks measure the raw path."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        messages_per_s: float = AWS_MAX_PUBLISH_PER_S,
        bytes_per_s: float = AWS_MAX_BYTES_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        # A burst of a tenth of a second keeps every sliding one-second window near the rate.
        self.messages = TokenBucket(messages_per_s, max(1.0, messages_per_s / 10), clock)
        self.bytes = TokenBucket(bytes_per_s, max(float(AWS_MAX_PAYLOAD), bytes_per_s / 10), clock)
        # A little over one second: the broker sees a publish slightly after we count it.
        self.window = SlidingWindow(max(1, int(messages_per_s)), bytes_per_s, WINDOW_SPAN, clock)

    def try_acquire(self, size: int) -> bool:
        """Take one publish of ``size`` bytes if both buckets allow it now."""
        if not self.enabled:
            return True
        if not (
            self.messages.available(1) and self.bytes.available(size) and self.window.allows(size)
        ):
            return False
        self.messages.take(1)
        self.bytes.take(size)
        self.window.record(size)
        return True

    def published(self) -> None:
        """Call right after the PUBLISH allowed by the last ``try_acquire`` was written."""
        if self.enabled:
            self.window.restamp_last()

    def wait_time(self, size: int) -> float:
        if not self.enabled:
            return 0.0
        return max(
            self.messages.wait_time(1), self.bytes.wait_time(size), self.window.wait_time(size)
        )
