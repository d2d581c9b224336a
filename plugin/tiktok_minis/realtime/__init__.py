"""The Socket.IO face, and the only package that knows Socket.IO: the events and pushes
(``Realtime``), the hardening of a server against hostile frames (``harden``), and the Redis
client manager that lets several processes share rooms (``RedisManager``)."""

from tiktok_minis.realtime._events import LoginHook, Realtime
from tiktok_minis.realtime._guard import DEFAULT_MAX_FRAME_BYTES, harden, refused_packets
from tiktok_minis.realtime._redis import RedisManager

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "LoginHook",
    "Realtime",
    "RedisManager",
    "harden",
    "refused_packets",
]
