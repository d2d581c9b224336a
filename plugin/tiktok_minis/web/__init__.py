"""The HTTP face: TikTok's signed webhook (``webhook``). The avatar, health and static routes
are mounted by the services that own them."""
