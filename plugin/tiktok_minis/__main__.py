"""The operator's commands: ``python -m tiktok_minis migrate`` and ``forget``.

Both read the same ``TTMINIS_*`` settings as the game server, so run them in the game's
environment. Output is one JSON line per command; the exit status is 0 on success, 2 for bad
settings or arguments, 1 when the player is unknown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tiktok_minis.errors import ConfigurationError, UnknownPlayer
from tiktok_minis.minis import TikTokMinis
from tiktok_minis.settings import Settings
from tiktok_minis.store.database import migrate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tiktok_minis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "migrate", help="bring the database schema up to date (servers also do it at start)"
    )
    forget = commands.add_parser(
        "forget",
        help="revoke a player's grant at TikTok and delete their tokens, profile and scores",
    )
    forget.add_argument("open_id", help="the player's TikTok open_id")
    forget.add_argument(
        "--anonymise-scores",
        action="store_true",
        help="keep the scores on the boards under an anonymous placeholder instead",
    )
    return parser


async def _forget(settings: Settings, open_id: str, anonymise: bool) -> dict[str, object]:
    minis = TikTokMinis(settings)
    await minis.start()
    try:
        forgotten = await minis.players.forget(open_id, anonymise_scores=anonymise)
    finally:
        await minis.close()
    return {
        "forgotten": forgotten.player.id,
        "revoked_at_tiktok": forgotten.revoked_at_tiktok,
        "scores": forgotten.scores,
        "scores_anonymised": forgotten.scores_anonymised,
    }


def main(argv: list[str] | None = None) -> int:
    """Run one command; the process exit status."""
    args = _parser().parse_args(argv)
    try:
        # An admin command never runs the background refresher.
        settings = Settings(refresher_enabled=False)
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings.database_url))
        print(json.dumps({"applied": applied}))
        return 0
    try:
        result = asyncio.run(_forget(settings, args.open_id, args.anonymise_scores))
    except UnknownPlayer as exc:
        print(json.dumps({"error": "unknown_player", "message": exc.message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
