"""The Socket.IO face, and the only package that knows Socket.IO: the events and pushes
(``Realtime``), the hardening of a server against hostile frames (``harden``), the Redis
client manager that lets several processes share rooms (``RedisManager``), and the server's
building and shutdown (``build_server``, ``share_rooms``, ``hang_up``)."""

from tiktok_minis.realtime._events import LoginHook, Realtime
from tiktok_minis.realtime._guard import DEFAULT_MAX_FRAME_BYTES, harden, refused_packets
from tiktok_minis.realtime._redis import RedisManager
from tiktok_minis.realtime._server import build_server, hang_up, share_rooms

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "LoginHook",
    "Realtime",
    "RedisManager",
    "build_server",
    "hang_up",
    "harden",
    "refused_packets",
    "share_rooms",
]
