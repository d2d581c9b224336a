"""The Socket.IO face: the events and pushes (``Realtime``), the hardening of a server against
hostile frames (``harden``), the Redis client manager that lets several processes share rooms
(``RedisManager``), and the server's building and shutdown (``build_server``, ``share_rooms``,
``hang_up``).

The plugin's Socket.IO server code is all here: the services below know no ``sid``. Outside this
package only two modules import ``socketio``: ``minis`` (the composition root), which names
``AsyncServer`` in its signatures and hands the game's server here, and ``testing``, whose
``GameClient`` is a Socket.IO client.
"""

from tiktok_minis.realtime._events import LoginHook, Realtime
from tiktok_minis.realtime._guard import DEFAULT_MAX_FRAME_BYTES, harden
from tiktok_minis.realtime._redis import RedisManager
from tiktok_minis.realtime._refusals import refused_packets
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
