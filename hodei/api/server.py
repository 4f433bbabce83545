"""Running the API: uvicorn, in one process or several."""

from __future__ import annotations

import logging

import uvicorn

from hodei.settings import Settings

KEEP_ALIVE_S = 65
"""How long an idle client connection is kept open (uvicorn's default is 5 s). Longer
than the idle timeout of the usual load balancers (60 s), so a balancer never reuses a
connection the server is closing; the SDK drops its idle ones sooner
(``hodei.sdk_http.KEEP_ALIVE_S``), for the same reason."""

logger = logging.getLogger(__name__)


def serve_api(settings: Settings, host: str, port: int, *, workers: int = 1) -> None:
    """Serve until SIGTERM or Ctrl-C. Each worker process builds its own Container from
    the environment; nothing is kept in memory that another replica would need."""
    # The schema is checked (or, embedded, created) once here, not by racing workers.
    from hodei.bootstrap import Container

    container = Container(settings)
    container.ensure_schema()
    container.close()
    logger.info("hodei server: http://%s:%s (%d process(es))", host, port, workers)
    uvicorn.run(
        "hodei.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level=settings.log_level.lower(),
        log_config=None,  # hodei's logging (text or JSON lines), set up by the app factory
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )
