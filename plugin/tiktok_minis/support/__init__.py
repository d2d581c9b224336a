"""What every part leans on and nothing game-specific: owned background tasks and single
flights (``concurrency``), following a table across processes (``feeds``), trusted proxies and
client addresses (``proxies``)."""
