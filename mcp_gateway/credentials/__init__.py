"""Per-user upstream credentials: the flows that collect them (web form, OAuth consent) and their use."""
