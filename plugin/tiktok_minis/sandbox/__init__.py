"""A TikTok emulator for the demo, local development and tests: public API.

:class:`Sandbox` holds what TikTok would know (users, grants, codes, tokens) in memory and lets
a test act as the user (log in, press Allow or Deny, remove the app) or as a failing TikTok
(:meth:`Sandbox.inject`). :func:`create_app` serves it over HTTP exactly as TikTok documents its
Open API, with the control routes at ``/sandbox``; :class:`SandboxServer` runs that on a real
loopback port. ``Settings(sandbox=True)`` makes the plugin run one for itself; to drive the
TikTok client alone against it::

    sandbox = Sandbox()
    async with SandboxServer(sandbox) as server:
        client = TikTokClient(
            client_key=SANDBOX_CLIENT_KEY, client_secret=SANDBOX_CLIENT_SECRET, base_url=server.url
        )
        code = sandbox.login_code(sandbox.add_user().open_id)
"""

from tiktok_minis.sandbox.clock import ManualClock
from tiktok_minis.sandbox.control import create_control_app
from tiktok_minis.sandbox.faults import Fault
from tiktok_minis.sandbox.server import SandboxServer, create_app
from tiktok_minis.sandbox.state import Sandbox, SandboxUser

__all__ = [
    "Fault",
    "ManualClock",
    "Sandbox",
    "SandboxServer",
    "SandboxUser",
    "create_app",
    "create_control_app",
]
