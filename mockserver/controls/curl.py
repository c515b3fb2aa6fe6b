"""Copy as curl: a journal entry as a shell command that sends its request again.

Credentials are never written: the key becomes ``${API_KEY:-test}`` (the mock takes any
token unless keys are configured). A body the journal kept as it came (up to 16 KiB) is
written whole, image data included. A larger one was reduced when it was recorded: each of
its images is then referenced by a file named after its sha256 (``image-<sha256[:12]>.png``),
whose base64 the command reads with ``base64 -w0``, and a comment says which image to put
there; that body goes to curl on its standard input (``--data-binary @-``), since an image's
base64 is often more than one command-line argument may hold (128 KiB on Linux). What cannot
be reproduced (a string the journal cut, a body not kept) is said in a comment rather than
silently changed. Every value a client sent is shell-quoted: copying a command runs nothing
it carried.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, NamedTuple

import orjson

from .journal import EAGER_BYTES, JournalEntry, ReducedBody, is_image_summary

# Headers curl writes itself, or that would be wrong sent again.
SKIPPED = frozenset({"host", "content-length", "connection", "accept-encoding", "transfer-encoding", "keep-alive",
                     "user-agent", "cookie", "x-mock-admin-token", "proxy-authorization", "expect"})
KEY_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,30}")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp",
              "image/gif": "gif", "image/bmp": "bmp", "image/tiff": "tiff"}
DEFAULT_HOST = "127.0.0.1:8000"
TRUNCATION_MARK = "...[truncated "
KEY = '"${API_KEY:-test}"'


class Body(NamedTuple):
    argument: str | None  # the --data-binary word
    producer: str | None = None  # a command writing the body to curl's standard input


def curl_command(entry: JournalEntry) -> str:
    """The shell command that sends ``entry``'s request again (with the notes it needs)."""
    notes: list[str] = []
    headers = entry.header_dict()
    host = headers.get("host") or DEFAULT_HOST
    url = f"http://{host}{entry.path}" + (f"?{entry.query}" if entry.query else "")
    body = body_of(entry, notes)
    options = ["curl -sS"]
    if entry.method != ("POST" if body.argument else "GET"):
        options.append(f"-X {shlex.quote(entry.method)}")
    options[-1] += f" {shlex.quote(url)}"
    for name, value in headers.items():
        if name in SKIPPED:
            continue
        if name in KEY_HEADERS:
            scheme = value.partition(" ")[0] if name == "authorization" else ""
            scheme = f"{scheme} " if SCHEME.fullmatch(scheme) else ""
            options.append(f"-H {shlex.quote(f'{header_name(name)}: {scheme}')}{KEY}")
            notes.append("the key is not kept: set API_KEY to yours (the mock takes any unless keys are configured)")
        else:
            options.append(f"-H {shlex.quote(f'{header_name(name)}: {value}')}")
    if body.argument:
        options.append(f"--data-binary {body.argument}")
    command = " \\\n  ".join(options)
    if body.producer:
        command = f"{body.producer} | {command}"
    return "\n".join([*(f"# {note}" for note in dict.fromkeys(notes)), command])


def header_name(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def body_of(entry: JournalEntry, notes: list[str]) -> Body:
    body = entry.body
    if entry.body_bytes == 0:
        return Body(None)
    if isinstance(body, bytes) and body and entry.body_bytes <= EAGER_BYTES:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            return Body(shlex.quote(text))
        notes.append(f"the body ({entry.body_bytes} bytes) is not text: the command sends none")
        return Body(None)
    if isinstance(body, ReducedBody) and body.body is not None:
        return reduced_body(body.body, notes)
    notes.append(f"the journal did not keep the body ({entry.body_bytes} bytes) whole: the command sends none")
    return Body(None)


def reduced_body(body: Any, notes: list[str]) -> Body:
    """A reduced body with each image read from a file named after its sha256."""
    images: list[dict[str, Any]] = []
    marker = "\x00image{}\x00"  # no JSON text a client sent holds a NUL once it is reduced

    def mark(value: Any) -> Any:
        if is_image_summary(value) and "bytes" in value:
            images.append(value)
            return marker.format(len(images) - 1)
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        if isinstance(value, str) and TRUNCATION_MARK in value:
            notes.append("the journal cut a long string of this body: the command sends the cut one")
        return value

    rest = orjson.dumps(mark(body)).decode()
    if not images:
        return Body(shlex.quote(rest))
    parts: list[str] = []
    for index, image in enumerate(images):
        # The marker, as a JSON string, stands where the image's string was.
        before, _, rest = rest.partition(orjson.dumps(marker.format(index)).decode())
        media_type = image.get("media_type")
        name = f"image-{image['sha256'][:12]}.{EXTENSIONS.get(media_type or '', 'bin')}"
        notes.append(f"{name}: the {media_type or 'image'} of {image['bytes']} bytes whose sha256 is "
                     f"{image['sha256']} (the journal keeps its hash, not its data)")
        prefix = f"data:{media_type};base64," if media_type else ""
        parts += [f"printf %s {shlex.quote(before + chr(34) + prefix)}", f"base64 -w0 {name}"]
        rest = '"' + rest
    parts.append(f"printf %s {shlex.quote(rest)}")
    # printf is the shell's own: its arguments may be as long as they like.
    return Body("@-", "{ " + "; ".join(parts) + "; }")
