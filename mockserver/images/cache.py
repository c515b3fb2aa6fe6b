"""A bounded memory of rendered PNGs, so an image fetched again is not drawn again."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

# What an entry costs beyond its PNG's bytes and its key's objects: the bytes object, the
# (value, cost) pair and the ordered dictionary's link (measured with tracemalloc on
# CPython 3.11, rounded up).
ENTRY_OVERHEAD = 256


def key_bytes(key: Hashable) -> int:
    """The memory a key's objects take, one level into its tuples (a render spec's palette)."""
    total = sys.getsizeof(key)
    for part in key if isinstance(key, tuple) else ():
        total += sys.getsizeof(part)
        if isinstance(part, tuple):
            total += sum(sys.getsizeof(item) for item in part)
    return total


class PngCache:
    """Least-recently-used, bounded by what it really holds (PNGs, keys and their overhead);
    safe to use from worker threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[Hashable, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        value = self.get(key)
        if value is not None:
            return value
        value = make()
        cost = len(value) + key_bytes(key) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, cost)
                self.size += cost
                while self.size > self.max_bytes:
                    _, (_, evicted) = self._items.popitem(last=False)
                    self.size -= evicted
        return value
