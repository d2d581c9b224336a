"""Hardening of the game's ``AsyncServer`` below the event handlers.

The wire contract has no binary packets, bounded frames and JSON text only; python-socketio and
engine.io accept more than that by default. :func:`harden` closes those gaps on a server the
plugin attaches to, whether the plugin built it or the game brought its own.
"""

from __future__ import annotations

import socketio

__all__ = ["harden"]


def harden(sio: socketio.AsyncServer) -> None:
    """Apply the plugin's limits to ``sio`` (idempotent)."""
