"""Answer cache for duplicate detection (RFC 6733 6.1.9 / section 10 of the spec digest).

Keyed by (Origin-Host, End-to-End id). Bounded in entries, in answer bytes (a count alone
lets 100k cached 1 MiB answers hold 100 GB) and in age; the TTL is one value for the whole
cache, so insertion order is expiry order and eviction looks only at the front.
Time is passed in.

An OrderedDict, not a dict: evicting from the front of a full plain dict costs a scan over
the holes earlier deletions left there (CPython compacts only on resize), which made a full
100,000-entry cache cost ~100 us per request; OrderedDict's front is O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

IN_PROGRESS = object()  # marks a request being handled whose answer is not known yet


class DuplicateCache:
    __slots__ = ("max_size", "max_bytes", "ttl", "in_progress_ttl", "_data", "nbytes")

    def __init__(
        self,
        max_size: int = 100_000,
        ttl: float = 240.0,
        in_progress_ttl: float = 10.0,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.nbytes = 0  # answer bytes held now
        self.ttl = ttl
        # A request whose answer never came (a lost worker, a handler that never answers)
        # must not make its retransmissions disappear for the whole TTL.
        self.in_progress_ttl = in_progress_ttl
        # key -> (answer bytes or IN_PROGRESS, time put); it expires at time put + ttl (one
        # ttl for all: no expiry kept per entry, ~30 bytes less each)
        self._data: OrderedDict[Any, tuple[Any, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def enabled(self) -> bool:
        return self.max_size > 0

    def get(self, key: Any, now: float) -> Any:
        """The cached answer bytes, IN_PROGRESS, or None."""
        item = self._data.get(key)
        if item is None:
            return None
        value, at = item
        if at + self.ttl <= now or (value is IN_PROGRESS and now - at > self.in_progress_ttl):
            self._pop(key)
            return None
        return value

    def begin(self, key: Any, now: float) -> None:
        """Note that a request is being handled, so a copy arriving meanwhile is caught."""
        self._put(key, IN_PROGRESS, now)

    def put(self, key: Any, answer: bytes, now: float) -> None:
        if len(answer) > self.max_bytes:  # could never fit: a retransmission is handled again
            self._pop(key)
            return
        self._put(key, answer, now)

    def forget(self, key: Any) -> None:
        self._pop(key)

    def _pop(self, key: Any) -> None:
        item = self._data.pop(key, None)
        if item is not None and item[0] is not IN_PROGRESS:
            self.nbytes -= len(item[0])

    def _put(self, key: Any, value: Any, now: float) -> None:
        data = self._data
        self._pop(key)
        data[key] = (value, now)  # appended: insertion order is expiry order
        if value is not IN_PROGRESS:
            self.nbytes += len(value)
        if len(data) > self.max_size:
            self.evict(now, force=len(data) - self.max_size)
        if self.nbytes > self.max_bytes:
            self._evict_bytes()

    def _evict_bytes(self) -> None:
        """Drop the oldest entries until the answers fit in max_bytes."""
        data = self._data
        while self.nbytes > self.max_bytes and data:
            _, item = data.popitem(last=False)
            if item[0] is not IN_PROGRESS:
                self.nbytes -= len(item[0])

    def evict(self, now: float, force: int = 0) -> int:
        """Drop expired entries from the front, plus `force` of the oldest live ones."""
        data = self._data
        removed = 0
        oldest = now - self.ttl  # entries put after this have not expired
        while data:
            key = next(iter(data))
            if force > 0:
                force -= 1
            elif data[key][1] > oldest:
                break
            _, item = data.popitem(last=False)
            if item[0] is not IN_PROGRESS:
                self.nbytes -= len(item[0])
            removed += 1
        return removed
