"""``qwen-image-mock serve``: run the mock on uvicorn.

Every setting has a flag and a ``QWEN_MOCK_*`` environment variable; a flag is passed to
the server as its variable, so each uvicorn worker process reads the same settings.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields

from .settings import Settings


def _flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen-image-mock", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the mock server",
                                description="Start the mock server on uvicorn.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default: %(default)s)")
    for f in fields(Settings):
        env = f.metadata["env"]
        help_text = f"{f.metadata['help']} [env {env}]"
        if f.type in ("bool", bool):
            serve.add_argument(_flag_name(f.name), dest=env, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            serve.add_argument(_flag_name(f.name), dest=env, metavar=f.name.upper(),
                               choices=f.metadata.get("choices"), help=help_text)
    from . import check

    check.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        from . import check

        return check.run(args)
    if args.command == "serve":
        import uvicorn

        from .protocol import BoundedHttpToolsProtocol

        for f in fields(Settings):
            value = getattr(args, f.metadata["env"])
            if isinstance(value, bool):
                value = "1" if value else "0"
            if value is not None:
                os.environ[f.metadata["env"]] = value
        try:
            settings = Settings.from_env()  # fail on a bad setting here, not in each worker
        except (ValueError, OSError) as error:
            parser.error(str(error))
        uvicorn.run("mockserver.app:create_app", factory=True, host=args.host, port=args.port,
                    log_level=args.log_level, workers=settings.workers, http=BoundedHttpToolsProtocol,
                    timeout_graceful_shutdown=settings.shutdown_timeout)
    return 0
