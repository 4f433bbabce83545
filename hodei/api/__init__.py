"""``hodei server``: the HTTP API (``/v1/...``), its authentication, and the health
and metrics endpoints. A thin layer: each route authenticates the caller, checks its
role and calls the same use cases as the SDK's local backend."""
