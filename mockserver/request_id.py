"""Every response carries ``x-request-id``; the OpenAI SDK reads ``request_id`` from it.
The front layer of the app (``control.MockControl``) assigns it and adds the header."""

from __future__ import annotations

import os
import re

from starlette.types import Scope

# A caller may choose the id (handy for reproducible responses), within reason.
CALLER_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_for(scope: Scope) -> str:
    given = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"")
    return given.decode() if CALLER_ID.fullmatch(given) else os.urandom(16).hex()
