"""The HTTP face: TikTok's signed webhook (``webhook``) and the kept avatars (``avatars``). The
health and static routes are mounted by the parts that own them."""
