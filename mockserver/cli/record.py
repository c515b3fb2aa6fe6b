"""``qwen-image-mock record``: the recording proxy on uvicorn.

    qwen-image-mock record --upstream https://api.example.com --cassette tests/cassettes/checkout

Point your client (its base URL) at the proxy instead of the provider; every call to an
edit endpoint is forwarded with the client's own key, answered with the provider's answer
unchanged, and kept in the cassette, which ``serve --replay`` answers from and
``check --cassette`` checks offline. See docs/cassettes.md.
"""

from __future__ import annotations

import argparse
import logging
import os

from ..core.settings import Settings

# The settings that bound the proxy, as flags of `record` too (the others are the mock's).
RECORD_SETTINGS = ("max_body_bytes", "max_header_bytes", "read_timeout", "cassette_max_bytes",
                   "cassette_max_exchange_bytes", "shutdown_timeout")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.01 and 3600 seconds, not {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    record = subparsers.add_parser(
        "record", help="record real exchanges through a proxy into a cassette",
        description="A recording proxy for every provider path the mock serves: each request is forwarded to "
                    "--upstream at the same path with the client's own headers, the upstream's answer goes back "
                    "unchanged, and each call to an edit endpoint is written to the cassette (no key is ever "
                    "written; nothing is retried). Replay it with `serve --replay DIR`, check it offline with "
                    "`check --cassette DIR`.")
    record.add_argument("--upstream", required=True, metavar="URL",
                        help="the provider's base URL (https://host, or with a path prefix); requests go to URL + "
                             "their own path")
    record.add_argument("--cassette", required=True, metavar="DIR",
                        help="the cassette directory: made if missing, added to if it exists")
    record.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    record.add_argument("--port", type=int, default=8001, help="port to listen on (default: %(default)s)")
    record.add_argument("--log-level", default="info", help="log level (default: %(default)s)")
    record.add_argument("--upstream-timeout", type=_seconds, default=300.0, metavar="S",
                        help="seconds the upstream has to answer a request, all of it (default: %(default)s); "
                             "past it the client gets 504 and nothing is retried")
    record.add_argument("--download-timeout", type=_seconds, default=60.0, metavar="S",
                        help="seconds the downloads of one answer's image links may take, all of them (default: "
                             "%(default)s); a link not downloaded by then is recorded as unavailable")
    specs = {spec.name: spec for spec in Settings.specs()}
    for name in RECORD_SETTINGS:
        spec = specs[name]
        record.add_argument("--" + name.replace("_", "-"), dest=spec.env, metavar=name.upper(),
                            help=f"{spec.help} [env {spec.env}]")
    return record


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from ..cassettes.cassette import CassetteError
    from ..cassettes.proxy import RecordingProxy
    from ..server.protocol import BoundedHttpToolsProtocol

    environ = {key: value for key, value in os.environ.items() if key.startswith("QWEN_MOCK_")}
    specs = {spec.name: spec for spec in Settings.specs()}
    for name in RECORD_SETTINGS:
        value = getattr(args, specs[name].env)
        if value is not None:
            environ[specs[name].env] = value
    try:
        settings = Settings.from_env(environ)
        proxy = RecordingProxy(settings, args.upstream, args.cassette, upstream_timeout=args.upstream_timeout,
                               download_timeout=args.download_timeout)
    except (ValueError, CassetteError, OSError) as error:
        parser.error(str(error))
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    logging.getLogger("qwen_image_mock.record").info(
        "recording %s into %s; point your client at http://%s:%d", proxy.upstream, args.cassette, args.host, args.port)
    # No access log: a request line may carry a key in its query; the proxy logs paths only.
    uvicorn.run(proxy, host=args.host, port=args.port, log_level=args.log_level, lifespan="on", access_log=False,
                http=BoundedHttpToolsProtocol.for_settings(settings), server_header=False, date_header=False,
                timeout_graceful_shutdown=settings.shutdown_timeout)
    return 0
