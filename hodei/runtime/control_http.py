"""The worker's :class:`~hodei.runtime.control_plane.ControlPlane` over ``hodei server``.

An API-mode worker holds the API's URL, its broker URL and, once registered, its own
credential, in this object's memory only (never in its environment, argv, logs or
events; the worker is undumpable). Any failure to reach the API, or a 5xx from it,
is :class:`~hodei.errors.ControlPlaneUnavailable`, which the worker handles as a
database outage. A refusal (401: the credential is revoked; 403: not this worker's
attempt) is recorded by the server; here a refused finish is "no longer this worker's"
and a refused claim loses.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from uuid import UUID

import httpx
from pydantic import TypeAdapter

from hodei.api.wire import (
    CancelCheck,
    ClaimOut,
    LogLineOut,
    WorkerPulse,
    WorkerRegistered,
)
from hodei.domain.records import Job, LogLine, Worker
from hodei.domain.states import WorkerState
from hodei.errors import (
    ControlPlaneUnavailable,
    Forbidden,
    HodeiError,
    InvalidConfiguration,
    NotFound,
    TokenRejected,
    Unauthorized,
    error_class,
)
from hodei.services.fleet.workers import Pulse, WorkerReport
from hodei.services.jobs.attempts import Claim, Outcome
from hodei.settings import mask_url
from hodei.store.outage import OutageReporter

logger = logging.getLogger(__name__)

_JOB = TypeAdapter(Job)


class HttpControlPlane:
    """Calls /v1/worker on ``url``; see the module docstring."""

    def __init__(
        self, url: str, *, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidConfiguration("HODEI_API_URL must start with http:// or https://")
        self._url = url.rstrip("/")
        # Threads share it: the heartbeat's, Celery's pool threads, the outcome keeper's.
        self._http = httpx.Client(base_url=self._url, timeout=timeout_s, transport=transport)
        self.outage = OutageReporter(f"the hodei API at {mask_url(self._url)}")
        self._worker_id: UUID | None = None
        self._secret_env: dict[UUID, dict[str, str]] = {}
        self._lock = threading.Lock()

    def announce(self) -> None:
        self.outage.announce()

    # -- the calls ------------------------------------------------------------------------

    def register(self, token: str, infra_ref: str) -> Worker:
        body = {"token": token, "infra_ref": infra_ref}
        raw = self._call("POST", "/v1/worker/register", json=body, authenticated=False)
        done = WorkerRegistered.model_validate_json(raw)
        # From here on every call carries the credential; it lives in this header only.
        self._http.headers["Authorization"] = f"Bearer {done.credential}"
        self._worker_id = done.worker.id
        return done.worker

    def heartbeat(self, *, record: bool, report: Callable[[], WorkerReport]) -> Pulse:
        body: dict[str, Any] = {"record": record}
        if record:
            held = report()
            body["jobs"] = [str(j) for j in held.jobs]
            body["pending_outcomes"] = held.pending_outcomes
        pulse = WorkerPulse.model_validate_json(
            self._call("POST", "/v1/worker/heartbeat", json=body)
        )
        return Pulse(
            WorkerState(pulse.state),
            pulse.running_jobs,
            pulse.waiting_jobs,
            keep_warm=pulse.keep_warm,
        )

    def claim(self, job_id: UUID, attempt: int, task_id: str) -> Claim:
        body = {"job_id": str(job_id), "attempt": attempt, "task_id": task_id}
        try:
            raw = self._call("POST", "/v1/worker/claims", json=body)
        except Forbidden as exc:  # another worker's attempt: lost, recorded by the server
            return Claim(False, exc.message)
        out = ClaimOut.model_validate_json(raw)
        if out.won and out.job is not None and out.secret_env:
            with self._lock:
                self._secret_env[out.job.id] = out.secret_env
        return Claim(out.won, out.reason, out.job)

    def finish(self, job: Job, outcome: Outcome) -> Job | None:
        body = {
            "job_id": str(job.id),
            "attempt": job.attempt,
            "outcome": {
                "exit_code": outcome.exit_code,
                "signal": outcome.signal,
                "timed_out": outcome.timed_out,
                "cancelled": outcome.cancelled,
                "duration_ms": outcome.duration_ms,
                "error": outcome.error,
            },
        }
        with self._lock:
            self._secret_env.pop(job.id, None)
        try:
            raw = self._call("POST", "/v1/worker/finishes", json=body)
        except (Unauthorized, Forbidden, NotFound) as exc:
            # Refused (and recorded as such by the server): the attempt is not ours.
            logger.warning(
                "finish of job %s attempt %d refused: %s",
                job.id,
                job.attempt,
                exc.message,
                extra={"job_id": str(job.id), "worker_id": str(self._worker_id)},
            )
            return None
        after: Job = _JOB.validate_json(raw)
        return after

    def cancel_requested(self, job: Job) -> bool:
        raw = self._call("GET", f"/v1/worker/jobs/{job.id}/{job.attempt}/cancel")
        return CancelCheck.model_validate_json(raw).cancel_requested

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        body = {"lines": [_line(ln) for ln in lines]}
        self._call("POST", "/v1/worker/output", json=body)

    def secret_env(self, job: Job) -> dict[str, str]:
        with self._lock:
            return dict(self._secret_env.get(job.id, {}))

    def terminate(self, reason: str) -> bool:
        try:
            raw = self._call("POST", "/v1/worker/terminate", json={"reason": reason[:1000]})
        except Unauthorized:
            return False  # already LOST or TERMINATED
        return bool(json.loads(raw).get("terminated"))

    def broker_lost(self, reason: str) -> None:
        body = {"reachable": False, "reason": reason[:1000]}
        self._call("POST", "/v1/worker/broker", json=body)

    def broker_back(self, down_s: float) -> None:
        self._call("POST", "/v1/worker/broker", json={"reachable": True, "down_s": down_s})

    def close(self) -> None:
        self._http.close()

    # -- one request ----------------------------------------------------------------------

    def _call(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> bytes:
        if authenticated and "Authorization" not in self._http.headers:
            raise Unauthorized("this worker has not registered")
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.outage.failed(type(exc).__name__)
            raise ControlPlaneUnavailable(
                f"the hodei API at {mask_url(self._url)} is unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code >= 500:
            self.outage.failed(f"HTTP {response.status_code}")
            raise ControlPlaneUnavailable(
                f"the hodei API at {mask_url(self._url)} answered {response.status_code}"
            )
        self.outage.succeeded()
        if response.status_code >= 400:
            _raise_problem(response)
        return response.content


def _line(line: LogLine) -> dict[str, Any]:
    out = LogLineOut.of(line)
    return {
        "id": None,
        "job_id": str(out.job_id),
        "attempt_no": out.attempt_no,
        "stream": out.stream,
        "line": out.line,
        "ts": out.ts.isoformat(),
        "data_b64": base64.b64encode(line.data).decode(),
    }


def _raise_problem(response: httpx.Response) -> NoReturn:
    """The HodeiError a problem document names (its detail never holds a secret)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "")
    detail = str(body.get("detail") or f"HTTP {response.status_code} from the hodei API")
    if code == "TokenRejected":
        raise TokenRejected(detail, detail)
    cls = error_class(code)
    if cls is HodeiError and response.status_code == 401:
        cls = Unauthorized
    raise cls(detail)
