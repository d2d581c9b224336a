"""Run the example game: ``python -m example_server [--host HOST] [--port PORT] [--sandbox]``."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from example_server.app import create_app
from tiktok_minis import ConfigurationError, JsonFormatter, Settings


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, configure logging and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m example_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run the built-in TikTok emulator instead of TikTok: no credentials, no network "
        "(the same as TTMINIS_SANDBOX=true; for the demo and local development only)",
    )
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    try:
        app = create_app(Settings(sandbox=True) if args.sandbox else Settings())
    except ConfigurationError as exc:
        hint = " (for the example server, --sandbox does the same)"
        print(exc.message + (hint if "TTMINIS_SANDBOX" in exc.message else ""), file=sys.stderr)
        return 2
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            # Printed once the site listens, never before a failed start.
            print=lambda _: print(
                f"Example game on http://{args.host}:{args.port}/ (Ctrl+C to stop)",
                file=sys.stderr,
            ),
            shutdown_timeout=3.0,
        )
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
