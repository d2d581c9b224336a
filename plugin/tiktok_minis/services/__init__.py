"""The rules: players and their tokens and profiles (``players``, ``profile``), sessions,
leaderboards, the background profile refresher and the avatar copies. Services know neither
Socket.IO nor HTTP routes; the faces (``realtime``, ``web``) call them."""
