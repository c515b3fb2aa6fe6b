"""A bounded memory of rendered PNGs, so an image fetched again is not drawn again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable


class PngCache:
    """Least-recently-used, bounded by total bytes; safe to use from worker threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        value = self.get(key)
        if value is not None:
            return value
        value = make()
        if len(value) > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self.size += len(value)
                while self.size > self.max_bytes:
                    _, evicted = self._items.popitem(last=False)
                    self.size -= len(evicted)
        return value
