"""The ASGI application of ``hodei server``: /v1 routers, /metrics and /health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hodei import __version__
from hodei.api import problems
from hodei.api.auth import REGISTRY
from hodei.api.routes import events, fleet, jobs, schedules, worker
from hodei.bootstrap import Container
from hodei.errors import ServiceUnavailable
from hodei.settings import Settings

logger = logging.getLogger(__name__)

ASGIApp = Callable[..., Awaitable[None]]


class StoppingAnswers:
    """What a request still running when the server stops gets (``hodei server`` drops
    them after its shutdown grace, ``hodei.api.server.SHUTDOWN_GRACE_S``).

    uvicorn cancels such a request's task, and the only thing that cancels one is the
    shutdown (a client that hangs up is told through ``receive``, not by a cancel). A
    request that has not answered yet (a long-polling ``wait``) gets a 503 problem and
    ``Connection: close``, instead of the 500 and traceback uvicorn would log for it:
    the SDK asks again, of another replica or the restarted server. A stream that has
    started (a followed log, the event stream) is cut mid-way, which its client reads
    as a dropped connection and resumes after its last line or event."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except asyncio.CancelledError:
            if started:
                return  # uvicorn closes the connection on a response left unfinished
            stopping = ServiceUnavailable("the hodei server is stopping; ask again")
            response = problems.hodei_problem(stopping)
            response.headers["Connection"] = "close"
            response.headers["Retry-After"] = "0"
            await response(scope, receive, send)


class _Ops:
    """The probes' and the scrape's dependencies, built on first use."""

    def __init__(self, container: Container) -> None:
        self._container = container

    @cached_property
    def health(self) -> Any:
        from hodei.observability.health import HealthChecker

        return HealthChecker(self._container.engine, self._container.app)

    @cached_property
    def registry(self) -> Any:
        from hodei.observability.metrics import build_registry

        return build_registry(self._container.engine)


def create_app(container: Container) -> FastAPI:
    """The API over one Container (its engine pools the database connections)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        container.close()  # the engine's pooled connections

    app = FastAPI(
        lifespan=lifespan,
        title="hodei",
        version=__version__,
        description=(
            "Run shell-command jobs on ephemeral Celery workers. Every /v1 call needs "
            "`Authorization: Bearer hodei_pat_...`; errors are application/problem+json "
            "whose `code` is hodei's error class and `exit_code` the CLI's."
        ),
    )
    app.state.container = container
    ops = _Ops(container)
    problems.install(app)
    app.add_middleware(StoppingAnswers)
    for router in (jobs.router, events.router, fleet.router, schedules.router, worker.router):
        app.include_router(router, responses=problems.RESPONSES)

    @app.get("/health/live", tags=["operations"], summary="Liveness: 200 while serving")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/health/ready",
        tags=["operations"],
        summary="Readiness: database and broker reachable (200 or 503)",
        responses={503: {"description": "a dependency is down"}},
    )
    def ready() -> JSONResponse:
        ok, body = ops.health.report(full=False)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/health",
        tags=["operations"],
        summary="Checks with durations and pool numbers (200 or 503)",
        responses={503: {"description": "a dependency is down"}},
    )
    def health() -> JSONResponse:
        ok, body = ops.health.report(full=True)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (from the database, and this process's API counters)",
        response_class=Response,
    )
    def metrics(request: Request) -> Response:
        data = generate_latest(ops.registry) + generate_latest(REGISTRY)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker process (``hodei server --workers N``)."""
    from hodei.logconfig import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(Container(settings))
