"""Headless Chromium for the dashboard's browser tests: Debian's ``chromium`` driven through its
``chromium-driver`` by Selenium, never a browser downloaded (the machines have no network for
that). A missing browser fails the tests with what to install: they are never skipped."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = os.environ.get("QWEN_MOCK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("QWEN_MOCK_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = ("the browser tests need Chromium and its driver from Debian's packages: "
           "sudo apt-get install chromium chromium-driver (make test-browser installs them when run as root), "
           "and Selenium: pip install -e '.[test]'")
# The machine's network is closed: nothing in the background may try to reach it.
ARGUMENTS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--window-size=1400,1000", "--force-device-scale-factor=1"]

T = TypeVar("T")


def start_chromium(profile: Path) -> Any:
    """A headless Chromium with a fresh profile in ``profile``; fails with what to install."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (Path(path).is_file() and os.access(path, os.X_OK))]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [*ARGUMENTS, f"--user-data-dir={profile}"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With executable_path given, Selenium Manager never looks for (or downloads) a driver.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait_for(condition: Callable[[], T], seconds: float = 10.0, message: str = "") -> T:
    """Poll ``condition`` until it returns something true; its value."""
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 -- an element not there yet, or gone stale
            last_error = error
        time.sleep(0.02)  # polling a condition, not waiting a fixed time
    raise AssertionError(f"timed out after {seconds} s: {message} (last error: {last_error!r})")


def remove_profile(profile: Path) -> None:
    shutil.rmtree(profile, ignore_errors=True)


def fire(port: int, path: str, body: bytes, count: int, connections: int = 8,
         headers: dict[str, str] | None = None) -> list[str]:
    """Send ``count`` POSTs as fast as a few keep-alive connections of raw HTTP/1.1 allow (an
    HTTP library would spend more of this machine's two cores than the mock does); the
    ``x-request-id`` of each, in the order they were sent per connection."""
    import socket
    import threading

    head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n{head}\r\n").encode() + body
    ids: list[list[str]] = [[] for _ in range(connections)]

    def connection(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            for _ in range(index, count, connections):
                sock.sendall(request)
                status = reader.readline()
                assert status.startswith(b"HTTP/1.1 200"), status
                length, request_id = 0, ""
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "x-request-id":
                        request_id = value.strip()
                reader.read(length)
                ids[index].append(request_id)

    threads = [threading.Thread(target=connection, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [request_id for per_connection in ids for request_id in per_connection]
