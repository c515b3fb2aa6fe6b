"""``qwen-image-mock serve``: run the mock on uvicorn (``check`` and ``record`` are in their own modules).

Every setting has a flag and a ``QWEN_MOCK_*`` environment variable; a flag is passed to
the server as its variable, so each uvicorn worker process reads the same settings.
"""

from __future__ import annotations

import argparse
import os

from ..core.settings import Settings


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
    for spec in Settings.specs():
        help_text = f"{spec.help} [env {spec.env}]"
        if spec.is_flag:
            serve.add_argument(_flag_name(spec.name), dest=spec.env, action=argparse.BooleanOptionalAction,
                               help=help_text)
        else:
            serve.add_argument(_flag_name(spec.name), dest=spec.env, metavar=spec.name.upper(),
                               choices=spec.choices, help=help_text)
    from . import check, record

    check.add_parser(commands)
    record.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        from . import check

        return check.run(args)
    if args.command == "record":
        from . import record

        return record.run(args, parser)
    if args.command == "serve":
        import uvicorn

        from ..app import create_app
        from ..server.protocol import BoundedHttpToolsProtocol

        for spec in Settings.specs():
            value = getattr(args, spec.env)
            if isinstance(value, bool):
                value = "1" if value else "0"
            if value is not None:
                os.environ[spec.env] = value
        try:
            settings = Settings.from_env()
            # Fail on a bad setting here, not in each worker: building the app checks what
            # the settings alone cannot (the fault names chaos draws from, the schemas).
            create_app(settings)
        except (ValueError, OSError) as error:
            parser.error(str(error))
        uvicorn.run("mockserver.app:create_app", factory=True, host=args.host, port=args.port,
                    log_level=args.log_level, workers=settings.workers, http=BoundedHttpToolsProtocol,
                    timeout_graceful_shutdown=settings.shutdown_timeout)
    return 0
