"""Every response carries ``x-request-id``; the OpenAI SDK reads ``request_id`` from it.
The front layer of the app (``control.MockControl``) assigns it and adds the header."""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import Scope

# A caller may choose the id (handy for reproducible responses), within reason.
CALLER_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


# Unique, not secret: a random prefix per process (so workers and restarts never repeat
# one) and a counter, instead of a random-number system call per request.
PROCESS_PREFIX = os.urandom(8).hex()
_counter = itertools.count(1)


def request_id_for(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and CALLER_ID.fullmatch(value):
            return value.decode()
    return f"{PROCESS_PREFIX}{next(_counter):016x}"
