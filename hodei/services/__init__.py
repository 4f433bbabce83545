"""Use cases. They talk to the world only through the ports in :mod:`hodei.services.ports`."""
