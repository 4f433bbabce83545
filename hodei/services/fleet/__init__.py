"""The worker fleet: workers and their bootstrap tokens, what an API-mode worker may
do, the provider registry and health, provisioning, launches, reconciliation with the
infrastructure and what its failures do to jobs."""
