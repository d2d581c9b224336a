"""A stand-in for TikTok's Open API in a process of its own, for ``deploy/check.py``.

``python deploy/_tiktok_standin.py [--port P]`` serves the plugin's TikTok emulator
(:class:`tiktok_minis.sandbox.SandboxServer`) on ``127.0.0.1:P`` (``0``, the default: a free
port) and prints one JSON line, ``{"url": "http://127.0.0.1:<port>"}``, once it listens. Game
processes in production mode reach it through ``TTMINIS_API_BASE_URL=<url>`` with the
emulator's client key and secret; the emulator's control routes (what a person does in the
TikTok app: log in, press Allow, rename) are under ``<url>/sandbox/``. It runs until SIGINT or
SIGTERM. Never point a real deployment at it: it accepts public credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from tiktok_minis.sandbox import Sandbox, SandboxServer


async def serve(port: int) -> None:
    """Serve the emulator on ``127.0.0.1:port`` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SandboxServer(Sandbox(), "127.0.0.1", port) as server:
        print(json.dumps({"url": server.url}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the port and serve; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python deploy/_tiktok_standin.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
