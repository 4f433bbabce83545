"""A job's life: submit, publish, gates, claim and finish of an attempt, cancel and
retry, job ids as users type them, and cron schedules."""
