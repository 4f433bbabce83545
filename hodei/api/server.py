"""Running the API: uvicorn, in one process or several."""

from __future__ import annotations

import contextlib
import logging

import uvicorn

from hodei.settings import Settings

KEEP_ALIVE_S = 65
"""How long an idle client connection is kept open (uvicorn's default is 5 s). Longer
than the idle timeout of the usual load balancers (60 s), so a balancer never reuses a
connection the server is closing; the SDK drops its idle ones sooner
(``hodei.sdk_http.KEEP_ALIVE_S``), for the same reason."""

SHUTDOWN_GRACE_S = 10
"""How long, after SIGTERM, requests in flight may still finish before the server drops
them and exits. Without a bound, uvicorn waits for every connection: a followed log,
an event stream or a long-polling ``wait`` (up to 30 s) kept the server up as long as
the job ran. Ordinary calls take milliseconds; the long ones are dropped, and the SDK
resumes them on another replica or the restarted server. 10 s keeps the whole stop well
inside Kubernetes' default grace period (30 s, then SIGKILL) and Docker's default stop
timeout (10 s, which compose.yaml raises for the server)."""

logger = logging.getLogger(__name__)


def serve_api(settings: Settings, host: str, port: int, *, workers: int = 1) -> None:
    """Serve until SIGTERM or Ctrl-C. Each worker process builds its own Container from
    the environment; nothing is kept in memory that another replica would need."""
    from hodei.bootstrap import Container
    from hodei.listening import listen

    # The port first: taken, it is one line and exit 5 (as for `hodei serve`), before
    # anything else is logged; uvicorn's own bind would log it and exit 3 (NotFound's).
    sock = listen(host, port)
    try:
        # The schema is checked (or, embedded, created) once here, not by racing workers.
        container = Container(settings)
        container.ensure_schema()
        container.close()
        logger.info(
            "hodei server: http://%s:%s (%d process(es))", host, sock.getsockname()[1], workers
        )
        config = uvicorn.Config(
            "hodei.api.app:app_from_env",
            factory=True,
            workers=workers,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            log_level=settings.log_level.lower(),
            log_config=None,  # hodei's logging (text or JSON lines), set up by the app factory
            access_log=False,
            proxy_headers=True,
            server_header=False,
        )
        # What uvicorn.run does with the socket it binds, given ours.
        with contextlib.suppress(KeyboardInterrupt):
            if workers > 1:
                from uvicorn.supervisors import Multiprocess

                Multiprocess(config, sockets=[sock]).run()
            else:
                uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
