"""Watching hodei: Prometheus metrics computed from the database, health checks, and the
small HTTP server behind ``hodei serve``.

Every number comes from the database at scrape time, so restarting ``hodei serve`` (or
any other process) never resets a counter or loses a histogram.
"""
