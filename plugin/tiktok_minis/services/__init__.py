"""The rules: players and their tokens and profiles (``players``, ``tokens``, ``profile``),
sessions, leaderboards and their boards (``leaderboards``, ``boards``), the background profile
refresher, the avatar copies (``avatars``, with ``addresses`` judging where a download may
connect) and the webhook events acted on once (``webhook_events``). Services know neither
Socket.IO nor HTTP routes; the faces (``realtime``, ``web``) call them, and they query only
through the :class:`~tiktok_minis.store.Store` the composition root hands them."""
