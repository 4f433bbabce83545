"""The SDK over HTTP: :class:`HttpClient` has :class:`~hodei.sdk.Client`'s methods, return
types and errors, and calls a ``hodei server`` instead of the database.

``Client.from_env()`` returns one when ``HODEI_API_URL`` is set (with the token in
``HODEI_API_TOKEN``). Errors come back as problem documents naming hodei's error class;
they are raised here as that class. Waiting, following logs and following events
stream from the server (a long poll, NDJSON and Server-Sent Events), never a poll loop.

Calls and streams go over the standard library's keep-alive connections
(:mod:`hodei.sdk_http_pool`); httpx is imported only when a proxy from the environment
applies or a transport is injected, so ``hodei job run`` over the API loads neither it
nor the direct mode's SQLAlchemy, drivers and Celery (tests/integration/test_cli_imports.py).
"""

from __future__ import annotations

import builtins
import contextlib
import http.client
import json
import logging
import os
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlencode
from uuid import UUID

from pydantic import TypeAdapter

from hodei.api.wire import (
    ApiTokenOut,
    CreatedApiToken,
    JobPage,
    LogLineOut,
    LogPage,
    WorkerTokenOut,
    job_cursor,
)
from hodei.domain.events import DomainEvent
from hodei.domain.principals import ApiToken, Role
from hodei.domain.records import Job, LogLine, Provider, Worker
from hodei.domain.schedules import DEFAULT_CATCHUP, Schedule, check_paused
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState
from hodei.errors import (
    ClientClosed,
    HodeiError,
    InvalidConfiguration,
    InvalidInput,
    ServiceUnavailable,
    WaitTimeout,
    error_class,
)
from hodei.sdk_base import (
    LOG_PAGE_LINES,
    ClientBase,
    check_instance,
    check_seconds,
    checked_int,
    checked_text,
    checked_types,
    page_key,
    schedule_name,
    schedule_spec,
)
from hodei.sdk_http_pool import ConnectionPool, fast_path_for
from hodei.services.fleet.bootstrap_tokens import IssuedToken
from hodei.services.fleet.provider_registry import ProviderView
from hodei.services.fleet.provider_removal import Removal
from hodei.services.jobs.job_ids import parse_id_ref, parse_job_ref, parse_worker_ref
from hodei.services.jobs.schedules import ScheduleView
from hodei.services.operators.diagnosis import Diagnosis
from hodei.services.operators.doctor import DoctorOptions, DoctorReport
from hodei.services.operators.events_feed import FollowOptions
from hodei.services.operators.status import SystemStatus
from hodei.services.ports.providers import HealthReport
from hodei.services.ports.store import EventQuery
from hodei.settings import Settings, check_url, mask_url

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

T = TypeVar("T")

FOLLOW_RETRIES = 8
"""Reconnections in a row a followed log stream (or a dropped ``wait``) tries before
giving up: about 20 s with the backoff between them."""

LONG_POLL_S = 30.0
"""How long one ``wait`` request may block on the server."""

SSE_READ_TIMEOUT_S = 60.0
"""How long the event stream may be silent before the client reconnects (the server
sends a comment line more often than that)."""

KEEP_ALIVE_S = 50.0
"""How long an idle connection to the server is kept for the next call (httpx's
default is 5 s): less than the server's (``hodei.api.server.KEEP_ALIVE_S``, 65 s), so
the client never sends on a connection the server is closing."""

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    found = _ADAPTERS.get(kind)
    if found is None:
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def _as(kind: type[T] | Any, raw: bytes) -> Any:
    """The response body as ``kind``, parsed and validated in one pass (pydantic-core)."""
    return _adapter(kind).validate_json(raw)


def raise_problem(status: int, content: bytes) -> NoReturn:
    """Raise the HodeiError a problem document (a response's status and body) names
    (HodeiError for anything else)."""
    try:
        body = json.loads(content)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "")
    detail = str(body.get("detail") or f"HTTP {status} from the hodei API")
    cls = error_class(code)
    exc = cls.__new__(cls)
    HodeiError.__init__(exc, detail)  # TokenRejected's own __init__ wants a reason
    if code == "TokenRejected":
        exc.reason = detail  # type: ignore[attr-defined]
    raise exc


def _no_such_route(content: bytes) -> bool:
    """Whether a 404's body is not one of hodei's "no such job/worker/..." problems: no
    hodei ``code``, or the router's own "Not Found" for a path it does not serve."""
    try:
        body = json.loads(content)
    except ValueError:
        return True
    if not isinstance(body, dict):
        return True
    code, detail = body.get("code"), body.get("detail")
    return not code or (code == "NotFound" and detail == "Not Found")


class HttpClient(ClientBase):
    """A :class:`~hodei.sdk.Client` whose every call goes to a ``hodei server``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidConfiguration("HODEI_API_URL must start with http:// or https://")
        check_url("HODEI_API_URL", url)
        self._url = url.rstrip("/")
        # How messages and logs name the server: any credentials in the URL masked.
        self._shown = mask_url(self._url)
        self._closed = False
        # A server has answered this client (anything, an error too): a connection it
        # loses later is a restart or another replica to ask again, not a wrong URL.
        self._answered = False
        self._timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Calls and streams go through the standard library unless httpx must handle
        # them (a proxy from the environment, an injected transport): see sdk_http_pool.
        self._pool: ConnectionPool | None = None
        self._http: httpx.Client | None = None
        if transport is None and fast_path_for(url):
            self._pool = ConnectionPool(url, headers, timeout_s=timeout_s, keepalive_s=KEEP_ALIVE_S)
        else:
            self._http = _httpx_client(self._url, headers, timeout_s, transport)
        self._actor: str | None = None

    @classmethod
    def from_env(cls, *, interface: str = "sdk", home: Any = None, **overrides: Any) -> HttpClient:
        url = overrides.get("api_url") or os.environ.get("HODEI_API_URL", "")
        token = overrides.get("api_token") or os.environ.get("HODEI_API_TOKEN")
        return cls(url, token)

    @property  # type: ignore[override]
    def actor(self) -> str:
        """What the server records as the actor of this client's calls (asked once)."""
        if self._actor is None:
            self._actor = self.whoami()
        return self._actor

    @actor.setter
    def actor(self, value: str) -> None:
        raise InvalidInput("the server decides the actor: api:<token name>")

    # -- plumbing -----------------------------------------------------------------

    @property
    def _c(self) -> Any:
        raise InvalidConfiguration(
            "this client talks to a hodei server (HODEI_API_URL); it has no database"
        )

    @property
    def url(self) -> str:
        """The server this client talks to."""
        return self._url

    @property
    def settings(self) -> Settings:
        return Settings.from_env()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<hodei.HttpClient{state} url={self._shown!r}>"

    def _raise_problem(self, status: int, content: bytes, path: str) -> NoReturn:
        """:func:`raise_problem`, but a 404 that is no hodei error (a path the server does
        not serve, or a server that is not hodei) says that HODEI_API_URL is wrong: a
        bare "Not Found" read like a missing job."""
        if status == 404 and _no_such_route(content):
            base, v1, tail = self._url.rpartition("/v1")
            if v1 and not tail and base.count("/") >= 2:  # a URL ending in /v1
                raise InvalidConfiguration(
                    f"HODEI_API_URL should be the hodei server's base URL"
                    f" ({mask_url(base)}), not {self._shown}: hodei adds /v1 itself"
                )
            raise InvalidConfiguration(
                f"the hodei API at {self._shown} has no {path.partition('?')[0]}"
                " (404 Not Found): HODEI_API_URL should be the hodei server's base URL"
                " (http://host:port), or that server is an older hodei than this client"
            )
        raise_problem(status, content)

    def _request(self, method: str, path: str, **kwargs: Any) -> bytes:
        """The body of a successful response; a problem raises its HodeiError."""
        if self._closed:
            raise ClientClosed()
        if self._http is None:
            return self._pooled(method, path, **kwargs)
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServiceUnavailable(f"the hodei API at {self._shown} did not answer") from exc
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach the hodei API at {self._shown}") from exc
        self._answered = True
        if response.status_code >= 400:
            self._raise_problem(response.status_code, response.content, path)
        return response.content

    def _pooled(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> bytes:
        """:meth:`_request` over the standard library's keep-alive connections."""
        assert self._pool is not None
        path = _target(path, params)
        body = None
        headers = None
        if json is not None:
            body = _json_bytes(json)
            headers = _JSON_HEADERS
        try:
            response = self._pool.request(method, path, body, headers, timeout)
        except TimeoutError as exc:
            raise ServiceUnavailable(f"the hodei API at {self._shown} did not answer") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceUnavailable(f"cannot reach the hodei API at {self._shown}") from exc
        self._answered = True
        if response.status >= 400:
            self._raise_problem(response.status, response.body, path)
        return response.body

    @contextlib.contextmanager
    def _stream(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None = None,
        read_timeout_s: float | None = None,
    ) -> Iterator[Iterator[bytes]]:
        """The lines of a streamed response, as they come (without their line ends). A
        problem raises its HodeiError; a connection lost or refused, ``_StreamLost``."""
        if self._closed:
            raise ClientClosed()
        if self._http is not None:
            with self._httpx_stream(path, params, headers, read_timeout_s) as lines:
                yield lines
            return
        assert self._pool is not None
        try:
            with self._pool.stream("GET", _target(path, params), headers, read_timeout_s) as r:
                if r.status >= 400:
                    self._raise_problem(r.status, r.read(), path)
                yield _lines(r)
        except (OSError, http.client.HTTPException) as exc:
            raise _StreamLost(str(exc) or type(exc).__name__) from exc

    @contextlib.contextmanager
    def _httpx_stream(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        read_timeout_s: float | None,
    ) -> Iterator[Iterator[bytes]]:
        """:meth:`_stream` through httpx (a proxy, an injected transport)."""
        import httpx

        assert self._http is not None
        timeout = httpx.Timeout(self._timeout_s, read=read_timeout_s)
        try:
            with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    self._raise_problem(response.status_code, response.read(), path)
                yield (line.encode() for line in response.iter_lines())
        except httpx.HTTPError as exc:
            raise _StreamLost(str(exc) or type(exc).__name__) from exc

    def _get(self, path: str, **params: Any) -> bytes:
        return self._request("GET", path, params=_params(params))

    def _post(self, path: str, body: Any = None, **params: Any) -> bytes:
        return self._request("POST", path, json=body, params=_params(params))

    # -- submitting ---------------------------------------------------------------

    def submit_many(self, specs: Iterable[JobSpec]) -> builtins.list[Job]:
        if isinstance(specs, JobSpec | str | bytes) or not isinstance(specs, Iterable):
            raise InvalidInput(f"submit_many takes a list of JobSpec, got {type(specs).__name__}")
        specs = builtins.list(specs)
        if not all(isinstance(s, JobSpec) for s in specs):
            raise InvalidInput("submit_many takes a list of JobSpec")
        if len(specs) == 1:
            return [_as(Job, self._post("/v1/jobs", _submit_body(specs[0])))]
        body = {"jobs": [_submit_body(s) for s in specs]}
        return _as(builtins.list[Job], self._post("/v1/jobs/batch", body))  # type: ignore[no-any-return]

    # -- reading ------------------------------------------------------------------

    def get(self, job_id: str | UUID) -> Job:
        return _as(Job, self._get(f"/v1/jobs/{parse_job_ref(job_id)}"))  # type: ignore[no-any-return]

    def _job_id(self, value: str | UUID) -> UUID:
        """A job's id from its whole id or a unique prefix (the server resolves it)."""
        ref = parse_job_ref(value)
        return ref if isinstance(ref, UUID) else self.get(ref).id

    def list(
        self,
        *,
        state: str | JobState | Sequence[str | JobState] | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        before: Job | None = None,
        after_key: tuple[datetime, UUID] | None = None,
    ) -> builtins.list[Job]:
        states = [state] if isinstance(state, str | JobState) else builtins.list(state or [])
        key = page_key(before, after_key)
        cursor = job_cursor(before) if before else _cursor_of(key) if key else None
        data = self._get(
            "/v1/jobs",
            state=[str(s) for s in states] or None,
            name=checked_text(name, "name"),
            correlation_id=checked_text(correlation_id, "correlation_id"),
            limit=checked_int(limit, "limit", 1, 1000),
            cursor=cursor,
        )
        return JobPage.model_validate_json(data).items

    def wait(
        self, job_id: str | UUID, *, timeout: float | None = None, poll_s: float | None = None
    ) -> Job:
        """Block until the job is terminal: long polls, each held open by the server.

        A long poll the server drops (it is stopping: a 503, or a cut connection) is
        asked again, of whichever replica answers, up to ``FOLLOW_RETRIES`` failures in
        a row, as a followed log resumes; a client that no server has answered yet gets
        ServiceUnavailable at once."""
        check_seconds(timeout, "timeout", allow_none=True)
        check_seconds(poll_s, "poll_s", allow_none=True)
        job_uuid = self._job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            left = LONG_POLL_S if deadline is None else max(deadline - time.monotonic(), 0.0)
            hold = min(left, LONG_POLL_S)
            try:
                raw = self._request(
                    "GET",
                    f"/v1/jobs/{job_uuid}/wait",
                    params={"timeout": round(hold, 3)},
                    timeout=hold + self._timeout_s,
                )
            except ServiceUnavailable as exc:
                failures += 1
                late = deadline is not None and time.monotonic() >= deadline
                # Only a dropped poll or a stopping server is asked again: a server that
                # cannot reach its database (DatabaseUnavailable) says so at once.
                again = self._answered and type(exc) is ServiceUnavailable and not self._closed
                if not again or failures > FOLLOW_RETRIES or late:
                    raise
                logger.warning("wait on %s lost (%s); asking again", self._shown, exc)
                time.sleep(min(0.2 * 2 ** (failures - 1), 5.0))
                continue
            failures = 0
            job: Job = _as(Job, raw)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job.id} is still {job.state} after {timeout:g}s")

    def iter_logs(
        self,
        job_id: str | UUID,
        *,
        after_id: int = 0,
        tail: int | None = None,
        limit: int | None = None,
    ) -> Iterator[LogLine]:
        after_id = checked_int(after_id, "after_id")
        limit = None if limit is None else checked_int(limit, "limit", 1, 2**63 - 1)
        tail = None if tail is None else checked_int(tail, "tail")
        job_uuid = self._job_id(job_id)
        first = self._log_page(job_uuid, after_id, tail, limit)  # errors now, not lazily
        return self._pages(job_uuid, first, limit)

    def _log_page(
        self, job_uuid: UUID, after_id: int, tail: int | None, remaining: int | None
    ) -> tuple[builtins.list[LogLine], int | None]:
        size = LOG_PAGE_LINES if remaining is None else min(remaining, LOG_PAGE_LINES)
        data = self._get(f"/v1/jobs/{job_uuid}/logs", after_id=after_id, tail=tail, limit=size)
        page = LogPage.model_validate_json(data)
        return [line.to_line() for line in page.items], page.next_after_id

    def _pages(
        self,
        job_uuid: UUID,
        first: tuple[builtins.list[LogLine], int | None],
        limit: int | None,
    ) -> Iterator[LogLine]:
        lines, next_after = first
        remaining = limit
        while True:
            yield from lines
            if remaining is not None:
                remaining -= len(lines)
                if remaining <= 0:
                    return
            if next_after is None:
                return
            lines, next_after = self._log_page(job_uuid, next_after, None, remaining)

    def follow_logs(
        self, job_id: str | UUID, *, tail: int | None = None, poll_s: float | None = None
    ) -> Iterator[LogLine]:
        """Lines as the server streams them (NDJSON), until the job has ended."""
        check_seconds(poll_s, "poll_s", allow_none=True)
        tail = None if tail is None else checked_int(tail, "tail")
        job_uuid = self.get(job_id).id
        return self._follow_logs(job_uuid, tail)

    def _follow_logs(self, job_uuid: UUID, tail: int | None) -> Iterator[LogLine]:
        """A dropped stream is resumed after the last line it delivered, so no line is
        lost or repeated; after ``FOLLOW_RETRIES`` failures in a row, ServiceUnavailable."""
        last_id: int | None = None
        failures = 0
        while True:
            params = _params({"tail": tail} if last_id is None else {"after_id": last_id})
            try:
                with self._stream(f"/v1/jobs/{job_uuid}/logs/follow", params) as lines:
                    for raw in lines:
                        if raw:
                            line = LogLineOut.model_validate_json(raw).to_line()
                            last_id = line.id if line.id is not None else last_id
                            failures = 0
                            yield line
                return  # the server ends the stream once the job has ended
            except _StreamLost as exc:
                failures += 1
                if failures > FOLLOW_RETRIES or self._closed:
                    raise ServiceUnavailable(f"lost the hodei API at {self._shown}") from exc
                logger.warning("log stream from %s lost (%s); resuming", self._shown, exc)
                time.sleep(min(0.2 * 2 ** (failures - 1), 5.0))

    def timeline(
        self,
        job_id: str | UUID | None = None,
        *,
        correlation_id: str | None = None,
        limit: int = 5000,
        related: bool = True,
    ) -> builtins.list[DomainEvent]:
        if job_id is None and correlation_id is None:
            raise InvalidInput("give a job id or a correlation id")
        checked_text(correlation_id, "correlation_id")
        limit = checked_int(limit, "limit", 1, 100_000)
        if job_id is not None:
            data = self._get(
                f"/v1/jobs/{parse_job_ref(job_id)}/timeline", limit=limit, related=related
            )
        else:
            data = self._get("/v1/timeline", correlation_id=correlation_id, limit=limit)
        return _as(builtins.list[DomainEvent], data)  # type: ignore[no-any-return]

    # -- the operators' view ------------------------------------------------------

    def _events(
        self, query: EventQuery, aggregate_prefix: str | None = None
    ) -> builtins.list[DomainEvent]:
        aggregate = next(iter(query.aggregate_ids), None) or aggregate_prefix
        data = self._get(
            "/v1/events",
            type=query.event_types or None,
            aggregate_id=str(aggregate) if aggregate else None,
            correlation_id=query.correlation_id,
            since=query.since.isoformat() if query.since else None,
            after_id=query.after_id,
            limit=query.limit,
        )
        return _as(builtins.list[DomainEvent], data)  # type: ignore[no-any-return]

    def _aggregate_ref(self, value: str | UUID) -> UUID | str:
        # The server resolves a prefix against its jobs and workers.
        return parse_id_ref(value, "aggregate id")

    def follow_events(
        self,
        *,
        types: Sequence[str] = (),
        from_id: int | None = None,
        correlation_id: str | None = None,
        aggregate_id: str | UUID | None = None,
        options: FollowOptions | None = None,
    ) -> Generator[DomainEvent, None, None]:
        """Server-Sent Events; after a dropped connection it reconnects with the last id
        seen as ``Last-Event-ID``, so each event still comes exactly once, in order."""
        check_instance(options, FollowOptions, "options")
        checked_text(correlation_id, "correlation_id")
        from_id = None if from_id is None else checked_int(from_id, "from_id")
        types = checked_types(types)
        aggregate = self._aggregate_ref(aggregate_id) if aggregate_id is not None else None
        params = _params(
            {
                "type": types or None,
                "correlation_id": correlation_id,
                "aggregate_id": str(aggregate) if aggregate else None,
                "from_id": from_id,
            }
        )
        return self._sse(params, options or FollowOptions())

    def _sse(self, params: dict[str, Any] | None, options: FollowOptions) -> Generator[DomainEvent]:
        """Reconnects, with backoff, a stream that was open once; a server that cannot
        be reached at the first attempt is an error, not an endless retry."""
        last_id: int | None = None
        backoff = options.retry_s
        opened = False
        while True:
            headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
            try:
                with self._stream(
                    "/v1/events/stream", params, headers, SSE_READ_TIMEOUT_S
                ) as lines:
                    opened = True
                    for event in _sse_events(lines):
                        last_id = event.id
                        backoff = options.retry_s
                        yield event
            except (_StreamLost, _StreamEnded) as exc:
                if self._closed:
                    return
                if not opened:
                    unreachable = ServiceUnavailable(f"cannot reach the hodei API at {self._shown}")
                    raise unreachable from exc.__cause__ or exc
                logger.warning("event stream from %s lost (%s); reconnecting", self._shown, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, options.max_retry_s)

    def status(self) -> SystemStatus:
        return _as(SystemStatus, self._get("/v1/status"))  # type: ignore[no-any-return]

    def diagnose(self, job_id: str | UUID) -> Diagnosis:
        return _as(Diagnosis, self._get(f"/v1/jobs/{parse_job_ref(job_id)}/diagnosis"))  # type: ignore[no-any-return]

    def doctor(
        self, *, since: timedelta | None = None, options: DoctorOptions | None = None
    ) -> DoctorReport:
        """The server judges stale workers by its own settings; ``since``,
        ``pending_after`` and ``unhealthy_after`` of ``options`` are sent."""
        check_instance(since, timedelta, "since")
        check_instance(options, DoctorOptions, "options")
        params: dict[str, Any] = {}
        if options is not None:
            params = {
                "since_s": options.since.total_seconds(),
                "pending_after_s": options.pending_after.total_seconds(),
                "unhealthy_after_s": options.unhealthy_after.total_seconds(),
            }
        if since is not None:
            params["since_s"] = since.total_seconds()
        return _as(DoctorReport, self._get("/v1/doctor", **params))  # type: ignore[no-any-return]

    # -- controlling --------------------------------------------------------------

    def cancel(self, job_id: str | UUID) -> Job:
        return _as(Job, self._post(f"/v1/jobs/{parse_job_ref(job_id)}/cancel"))  # type: ignore[no-any-return]

    def retry(self, job_id: str | UUID) -> Job:
        return _as(Job, self._post(f"/v1/jobs/{parse_job_ref(job_id)}/retry"))  # type: ignore[no-any-return]

    def release(self, job_id: str | UUID) -> Job:
        return _as(Job, self._post(f"/v1/jobs/{parse_job_ref(job_id)}/release"))  # type: ignore[no-any-return]

    # -- providers ----------------------------------------------------------------

    def add_provider(self, name: str, provider_type: str, **fields: Any) -> Provider:
        body = {"name": name, "provider_type": provider_type, "fields": fields}
        return _as(Provider, self._post("/v1/providers", _jsonable(body)))  # type: ignore[no-any-return]

    def update_provider(self, name: str, **changes: Any) -> Provider:
        path = f"/v1/providers/{_segment(name)}"
        return _as(Provider, self._request("PATCH", path, json=_jsonable(changes)))  # type: ignore[no-any-return]

    def remove_provider(self, name: str, *, force: bool = False) -> Removal:
        path = f"/v1/providers/{_segment(name)}"
        data = self._request("DELETE", path, params={"force": "true" if force else "false"})
        return _as(Removal, data)  # type: ignore[no-any-return]

    def enable_provider(self, name: str) -> Provider:
        return _as(Provider, self._post(f"/v1/providers/{_segment(name)}/enable"))  # type: ignore[no-any-return]

    def disable_provider(self, name: str) -> Provider:
        return _as(Provider, self._post(f"/v1/providers/{_segment(name)}/disable"))  # type: ignore[no-any-return]

    def drain_provider(self, name: str) -> Provider:
        return _as(Provider, self._post(f"/v1/providers/{_segment(name)}/drain"))  # type: ignore[no-any-return]

    def provider(self, name: str) -> ProviderView:
        return _as(ProviderView, self._get(f"/v1/providers/{_segment(name)}"))  # type: ignore[no-any-return]

    def providers(self) -> builtins.list[ProviderView]:
        return _as(builtins.list[ProviderView], self._get("/v1/providers"))  # type: ignore[no-any-return]

    def check_provider_health(self, name: str | None = None) -> dict[str, HealthReport]:
        data = self._post("/v1/providers-health", name=name)
        return _as(dict[str, HealthReport], data)  # type: ignore[no-any-return]

    # -- workers, their bootstrap tokens, API tokens ----------------------------------

    def workers(self, *, all_states: bool = False, limit: int = 100) -> builtins.list[Worker]:
        data = self._get(
            "/v1/workers", all_states=all_states, limit=checked_int(limit, "limit", 1, 1000)
        )
        return _as(builtins.list[Worker], data)  # type: ignore[no-any-return]

    def worker(self, worker_id: str | UUID) -> Worker:
        # A prefix is resolved by the server, as a job's is.
        return _as(Worker, self._get(f"/v1/workers/{parse_worker_ref(worker_id)}"))  # type: ignore[no-any-return]

    def drain_worker(self, worker_id: str | UUID) -> Worker:
        path = f"/v1/workers/{parse_worker_ref(worker_id)}/drain"
        return _as(Worker, self._post(path))  # type: ignore[no-any-return]

    def create_worker_token(self, provider: str = "local", *, ttl_s: float = 300) -> IssuedToken:
        check_seconds(ttl_s, "ttl_s")
        out = WorkerTokenOut.model_validate_json(
            self._post("/v1/worker-tokens", {"provider": provider, "ttl_s": ttl_s})
        )
        return IssuedToken(
            worker=self.worker(out.worker_id), secret=out.token, expires_at=out.expires_at
        )

    def create_api_token(
        self, name: str, role: str | Role, *, expires_in: timedelta | None = None
    ) -> tuple[ApiToken, str]:
        body = {
            "name": name,
            "role": str(role),
            "expires_in_s": None if expires_in is None else expires_in.total_seconds(),
        }
        out = CreatedApiToken.model_validate_json(self._post("/v1/tokens", body))
        return _token(out), out.token

    def api_tokens(self, *, include_revoked: bool = False) -> builtins.list[ApiToken]:
        data = self._get("/v1/tokens", include_revoked=include_revoked)
        return [_token(t) for t in _as(builtins.list[ApiTokenOut], data)]

    def revoke_api_token(self, name: str) -> ApiToken:
        data = self._request("DELETE", f"/v1/tokens/{_segment(name)}")
        return _token(ApiTokenOut.model_validate_json(data))

    def whoami(self) -> str:
        """The actor the server records for this client's calls: ``api:<token name>``."""
        return str(json.loads(self._get("/v1/whoami"))["actor"])

    # -- cron schedules -----------------------------------------------------------

    def add_schedule(
        self,
        name: str,
        cron: str,
        spec: JobSpec | str | Sequence[str],
        *,
        timezone: str = "UTC",
        catchup: str = DEFAULT_CATCHUP,
        paused: bool = False,
        **fields: Any,
    ) -> Schedule:
        job = schedule_spec(name, spec, fields)
        if job.secret_env:
            raise InvalidInput("a schedule cannot carry secret_env yet; use env")
        body = {
            "name": name,
            "cron": cron,
            "timezone": timezone,
            "catchup": str(catchup),
            # Checked here: the API's lax bool would read "yes" as true.
            "paused": check_paused(paused),
            "job": {k: v for k, v in job.to_dict().items() if v is not None},
        }
        return _as(Schedule, self._post("/v1/schedules", body))  # type: ignore[no-any-return]

    def schedules(self) -> builtins.list[Schedule]:
        return _as(builtins.list[Schedule], self._get("/v1/schedules"))  # type: ignore[no-any-return]

    def schedule(self, name: str) -> ScheduleView:
        path = f"/v1/schedules/{_segment(schedule_name(name))}"
        return _as(ScheduleView, self._get(path))  # type: ignore[no-any-return]

    def _schedule_action(self, name: str, action: str) -> bytes:
        return self._post(f"/v1/schedules/{_segment(schedule_name(name))}/{action}")

    def pause_schedule(self, name: str) -> Schedule:
        return _as(Schedule, self._schedule_action(name, "pause"))  # type: ignore[no-any-return]

    def resume_schedule(self, name: str) -> Schedule:
        return _as(Schedule, self._schedule_action(name, "resume"))  # type: ignore[no-any-return]

    def trigger_schedule(self, name: str) -> Job:
        return _as(Job, self._schedule_action(name, "trigger"))  # type: ignore[no-any-return]

    def remove_schedule(self, name: str) -> Schedule:
        path = f"/v1/schedules/{_segment(schedule_name(name))}"
        return _as(Schedule, self._request("DELETE", path))  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._http is not None:
                self._http.close()
            if self._pool is not None:
                self._pool.close()


def _sse_events(lines: Iterator[bytes]) -> Iterator[DomainEvent]:
    """The events of a Server-Sent Events stream; its end, or an ``error`` event,
    raises ``_StreamEnded``."""
    data: builtins.list[bytes] = []
    kind = b""
    for line in lines:
        if line.startswith(b"data:"):
            data.append(line[5:].strip())
        elif line.startswith(b"event:"):
            kind = line[6:].strip()
        elif not line and data:
            if kind == b"error":
                raise _StreamEnded(b" ".join(data).decode(errors="replace"))
            yield _as(DomainEvent, b"\n".join(data))
            data, kind = [], b""
    raise _StreamEnded("the server closed the stream")


class _StreamEnded(Exception):
    """The event stream ended without the client asking: reconnect."""


class _StreamLost(Exception):
    """A stream's connection could not be made, or broke: reconnect."""


def _lines(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """A streamed response's lines as they arrive, without their ends. ``read1``, not
    ``readline``: a chunked stream cut mid-way raises ``IncompleteRead`` there, where
    ``readline`` would end as if the server had finished it."""
    pending = b""
    while chunk := response.read1(65536):
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")
    if response.length:  # a Content-Length the body fell short of
        raise http.client.IncompleteRead(pending, response.length)
    if pending:
        yield pending.rstrip(b"\r")


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    return f"{path}?{urlencode(params, doseq=True)}" if params else path


def _httpx_client(
    url: str, headers: Mapping[str, str], timeout_s: float, transport: httpx.BaseTransport | None
) -> httpx.Client:
    """The httpx client for what the standard library's connections do not do: a proxy
    from the environment, an injected transport (imported only then, ~80 ms)."""
    import httpx

    return httpx.Client(
        base_url=url,
        headers=dict(headers),
        timeout=timeout_s,
        transport=transport,
        limits=httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEP_ALIVE_S
        ),
    )


_JSON_HEADERS = {"Content-Type": "application/json"}


def _json_bytes(value: Any) -> bytes:
    """A request body as httpx's ``json=`` encodes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _submit_body(spec: JobSpec) -> dict[str, Any]:
    """A spec as ``POST /v1/jobs`` takes it: :meth:`JobSpec.to_dict` leaves secret_env
    out (it is for stored specs), so it is added here, in clear over the connection;
    the server seals it (use https:// beyond this host)."""
    body = spec.to_dict()
    if spec.secret_env:
        body["secret_env"] = dict(spec.secret_env)
    return body


def _params(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The query parameters that have a value; None for none (httpx then leaves the URL
    as it is instead of parsing and building it again)."""
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out or None


def _segment(name: str) -> str:
    """A name as one URL path segment (a slash or dot-dot could not reach another route)."""
    from urllib.parse import quote

    checked = checked_text(name, "name")
    if not checked:
        raise InvalidInput("give a name")
    return quote(checked, safe="")


def _cursor_of(key: tuple[datetime, UUID]) -> str:
    import base64

    raw = f"{key[0].isoformat()}|{key[1]}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _jsonable(value: Any) -> Any:
    """Tuples and other sequences as lists, for the JSON body."""
    return json.loads(json.dumps(value, default=builtins.list))


def _token(out: ApiTokenOut) -> ApiToken:
    return ApiToken(
        id=out.id,
        name=out.name,
        role=Role(out.role),
        token_hash="",  # never sent
        created_at=out.created_at,
        created_by=out.created_by,
        expires_at=out.expires_at,
        last_used_at=out.last_used_at,
        revoked_at=out.revoked_at,
    )


__all__ = ["HttpClient", "raise_problem"]
