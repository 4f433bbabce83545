"""Use cases, grouped by what they serve: ``jobs`` (a job's life, from submit to its
end, and cron schedules), ``fleet`` (workers, their tokens and the providers that run
them), ``operators`` (status, doctor, diagnosis, the event log, API tokens), and
``maintenance`` (beat's upkeep across both). They talk to the world only through the
ports in :mod:`hodei.services.ports`."""
