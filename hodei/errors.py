"""The hodei error tree.

Every error hodei raises on purpose derives from :class:`HodeiError`. The class
docstring is the default message and ``exit_code`` is what the CLI exits with, so
the codes listed in ``hodei --help`` and ``docs/manual.md`` come from one place.
"""

from __future__ import annotations

from typing import ClassVar


class HodeiError(Exception):
    """Something went wrong in hodei."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class InvalidInput(HodeiError):
    """The input is not valid."""

    exit_code = 2


class InvalidJobSpec(InvalidInput):
    """The job specification is not valid."""


class InvalidConfiguration(InvalidInput):
    """The configuration is not valid."""


class MissingExtra(InvalidConfiguration):
    """A provider type's library is not installed."""


class MethodNotAllowed(InvalidInput):
    """This API endpoint does not take that HTTP method."""


class NotFound(HodeiError):
    """The requested object does not exist."""

    exit_code = 3


class JobNotFound(NotFound):
    """No job has this id."""


class WorkerNotFound(NotFound):
    """No worker has this id."""


class ProviderNotFound(NotFound):
    """No provider has this name or id."""


class Conflict(HodeiError):
    """The operation does not apply to the object in its current state."""

    exit_code = 4


class ClientClosed(Conflict):
    """This client is closed; make a new one with Client.from_env()."""


class InvalidTransition(Conflict):
    """This state change is not allowed."""


class JobNotCancellable(Conflict):
    """The job has already finished and cannot be cancelled."""


class JobNotRetryable(Conflict):
    """Only failed, timed-out or cancelled jobs can be retried."""


class ScheduleNotFound(NotFound):
    """No schedule has this name."""


class ServiceUnavailable(HodeiError):
    """A service hodei depends on is unreachable."""

    exit_code = 5


class DatabaseUnavailable(ServiceUnavailable):
    """The database is unreachable."""


class ControlPlaneUnavailable(DatabaseUnavailable):
    """The hodei API an API-mode worker talks to is unreachable (or cannot reach its
    database): the worker treats it as a database outage."""


class BrokerUnavailable(ServiceUnavailable):
    """The message broker is unreachable."""


class ProviderUnavailable(ServiceUnavailable):
    """The provider's infrastructure is unreachable."""


# Infrastructure problems that will not go away by trying again.
PERMANENT_KINDS = frozenset(
    {"image_missing", "permission_denied", "forbidden", "invalid_config", "namespace_missing"}
)


class ProvisionFailed(ProviderUnavailable):
    """The provider refused to start a worker (``kind``: image_missing, unschedulable, ...)."""

    def __init__(self, kind: str, detail: str, *, permanent: bool | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.permanent = kind in PERMANENT_KINDS if permanent is None else permanent
        super().__init__(f"{kind}: {detail}")


class CircuitOpen(ProviderUnavailable):
    """The provider's circuit breaker is open: its API failed repeatedly."""


class SchemaOutOfDate(HodeiError):
    """The database schema is behind (`hodei db upgrade`) or differs (`hodei db current`)."""

    exit_code = 6


class SchemaMismatch(SchemaOutOfDate):
    """The database schema does not match this hodei; `hodei db current --check` names
    the differences."""


class TokenRejected(HodeiError):
    """The bootstrap token was rejected."""

    exit_code = 7

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or f"bootstrap token rejected: {reason}")


class WaitTimeout(HodeiError):
    """Timed out waiting for the job to finish."""

    exit_code = 8


class Unauthorized(HodeiError):
    """The API did not accept the caller's token (missing, unknown, revoked or expired)."""

    exit_code = 9


class Forbidden(HodeiError):
    """The caller's API token has a role that may not do this."""

    exit_code = 10


EXIT_CODES: tuple[type[HodeiError], ...] = (
    HodeiError,
    InvalidInput,
    NotFound,
    Conflict,
    ServiceUnavailable,
    SchemaOutOfDate,
    TokenRejected,
    WaitTimeout,
    Unauthorized,
    Forbidden,
)
"""The classes that define an exit code, in the order the docs list them."""


class DuplicateIdempotencyKey(Conflict):
    """Another job was submitted with this idempotency key at the same moment."""


class AttemptFailed(HodeiError):
    """The job's attempt did not succeed.

    A run-job task raises it after the outcome is recorded, so Celery's task events,
    and Flower, show the task failed when hodei recorded the job failed."""


def error_class(name: str) -> type[HodeiError]:
    """The HodeiError subclass called ``name`` (as an API error names it), else HodeiError."""
    found = _SUBCLASSES.get(name)
    if found is None:
        _SUBCLASSES.update({c.__name__: c for c in _all_subclasses(HodeiError)})
        found = _SUBCLASSES.get(name, HodeiError)
    return found


_SUBCLASSES: dict[str, type[HodeiError]] = {"HodeiError": HodeiError}


def _all_subclasses(cls: type[HodeiError]) -> list[type[HodeiError]]:
    out: list[type[HodeiError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out
