"""Seed networks, one decorated builder per name (``@register_seed``); see :mod:`.catalog`."""
