"""What the dashboard asks to see: the query parameters of its live stream, checked (a bad one
is a 400 naming it), and the test an exchange must pass.

    provider   one of the providers
    status     2xx, 3xx, 4xx, 5xx, or none (no answer: a dropped connection)
    session    the X-Mock-Session value, exactly
    q          free text, found case-insensitively in what the page shows of an exchange
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .journal import JournalEntry

TEXT_LIMIT = 256
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")
# Parameters the live stream knows; others are ignored, as the journal's API does.
KNOWN = ("provider", "status", "session", "q")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Filters:
    provider: str | None = None
    status: str | None = None
    session: str | None = None
    text: str | None = None  # lower-case

    @classmethod
    def parse(cls, params: Mapping[str, str], providers: Collection[str]) -> Filters:
        """From query parameters; an empty value means no filter."""
        values = {name: params.get(name) or None for name in KNOWN}
        for name, value in values.items():
            if value is not None and (len(value) > TEXT_LIMIT or not value.isprintable()):
                raise FilterError(f"{name} must be printable text of at most {TEXT_LIMIT} characters")
        if values["provider"] is not None and values["provider"] not in providers:
            raise FilterError(f"provider must be one of {', '.join(sorted(providers))}")
        if values["status"] is not None and values["status"] not in STATUS_CLASSES:
            raise FilterError(f"status must be one of {', '.join(STATUS_CLASSES)}")
        text = values["q"].strip().lower() if values["q"] is not None else None
        return cls(values["provider"], values["status"], values["session"], text or None)

    def admits(self, entry: JournalEntry) -> bool:
        """The filters an entry's fields decide (all but the free text)."""
        if self.provider is not None and entry.provider != self.provider:
            return False
        if self.session is not None and entry.session != self.session:
            return False
        if self.status is not None:
            if entry.status is None:
                return self.status == "none"
            return self.status != "none" and entry.status // 100 == int(self.status[0])
        return True

    def shows(self, view: dict[str, Any]) -> bool:
        """The free text, in what the page shows of an exchange (not its pictures' data)."""
        if self.text is None:
            return True
        return self.text in searchable(view)

    def describe(self) -> dict[str, str | None]:
        return {"provider": self.provider, "status": self.status, "session": self.session, "q": self.text}


def searchable(view: dict[str, Any]) -> str:
    shown = {key: value for key, value in view.items() if key not in ("previews", "curl")}
    return orjson.dumps(shown).decode("utf-8", "replace").lower()

