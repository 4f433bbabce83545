"""Celery: the app, routing, tasks, signal handlers and the beat schedule."""
