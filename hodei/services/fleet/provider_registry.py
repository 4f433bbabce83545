"""The provider registry: add, update, enable, disable and drain providers.

Every change writes its event (ProviderRegistered, ProviderUpdated,
ProviderStatusChanged) in the same transaction. Per-type config validation is
injected (``validate``), because its pydantic models live in ``hodei.providers``.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hodei.domain import transitions
from hodei.domain.event_builders import plain, provider_event
from hodei.domain.events import EventType
from hodei.domain.inputs import label_problem, number_problem, quoted, text_problem
from hodei.domain.records import Provider
from hodei.domain.states import ProviderStatus
from hodei.domain.urls import mask_url
from hodei.errors import Conflict, InvalidConfiguration, ProviderNotFound
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)

ConfigValidator = Callable[[str, dict[str, Any]], dict[str, Any]]

# The name becomes a queue (hodei.<name>) and a Kubernetes label value.
# Used with fullmatch: `$` would also accept a trailing newline.
_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
DEFAULT_HEALTH_CHECK = {"timeout_s": 5.0, "interval_s": 30.0}
EDITABLE = (
    "config",
    "priority",
    "max_workers",
    "min_workers",
    "labels",
    "preferred_region",
    "allowed_regions",
    "health_check",
)


@dataclass(frozen=True)
class ProviderSpec:
    """What ``hodei provider add`` asks for."""

    name: str
    provider_type: str
    config: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_workers: int = 2
    min_workers: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    preferred_region: str | None = None
    allowed_regions: Sequence[str] = ()
    health_check: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderView:
    """A provider with the numbers derived from its workers."""

    provider: Provider
    live_workers: int


def add_provider(
    store: Store, clock: Clock, spec: ProviderSpec, *, validate: ConfigValidator, actor: str
) -> Provider:
    """Register a provider (ACTIVE, health UNKNOWN until its first check)."""
    now = clock.now()
    fields = _checked(spec.provider_type, _spec_fields(spec), validate)
    provider = Provider(
        id=uuid.uuid4(),
        name=_checked_name(spec.name),
        provider_type=spec.provider_type,
        created_at=now,
        updated_at=now,
        **fields,
    )
    with store.transaction() as tx:
        if tx.providers.get_by_name(provider.name) is not None:
            raise Conflict(f"a provider named {provider.name!r} already exists")
        tx.providers.add(provider)
        tx.events.add(
            provider_event(
                provider,
                EventType.PROVIDER_REGISTERED,
                actor,
                now,
                provider_type=provider.provider_type,
                **_public(fields),
            )
        )
    logger.info("Provider registered: %s (%s)", provider.name, provider.provider_type)
    return provider


def update_provider(
    store: Store,
    clock: Clock,
    name: str,
    changes: Mapping[str, Any],
    *,
    validate: ConfigValidator,
    actor: str,
) -> Provider:
    """Change some of a provider's settings; ProviderUpdated lists what changed."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidConfiguration(f"cannot update {', '.join(unknown)}")
    now = clock.now()
    with store.transaction() as tx:
        current = _get(tx.providers.get_by_name(name), name)
        merged = {k: getattr(current, k) for k in EDITABLE} | dict(changes)
        fields = _checked(current.provider_type, merged, validate)
        diff = {
            k: {"old": plain(getattr(current, k)), "new": plain(v)}
            for k, v in fields.items()
            if plain(getattr(current, k)) != plain(v)
        }
        if not diff:
            return current
        changed = {k: fields[k] for k in diff}
        tx.apply(
            transitions.update_provider(current, changed, shown=_public(diff), actor=actor, now=now)
        )
        updated = tx.providers.get(current.id)
    assert updated is not None
    logger.info("Provider updated: %s (%s)", name, ", ".join(diff))
    return updated


def set_provider_status(
    store: Store, clock: Clock, name: str, status: ProviderStatus, *, actor: str
) -> Provider:
    """ACTIVE (enable), DISABLED (no new jobs, no new workers) or DRAINING (no new jobs
    or workers; queued jobs still run on the workers it has)."""
    now = clock.now()
    with store.transaction() as tx:
        current = _get(tx.providers.get_by_name(name), name)
        if current.status is status:
            return current
        # Read in this transaction, so the status guard holds unless the store lets
        # another writer in between: then that one's status stands.
        tx.apply(transitions.set_provider_status(current, status, actor=actor, now=now))
        updated = tx.providers.get(current.id)
    assert updated is not None
    logger.info("Provider %s is now %s", name, status)
    return updated


def get_provider(store: Store, name: str) -> ProviderView:
    with store.transaction() as tx:
        provider = _get(tx.providers.get_by_name(name), name)
        return ProviderView(provider, tx.providers.live_worker_counts().get(provider.id, 0))


def list_providers(store: Store) -> list[ProviderView]:
    with store.transaction() as tx:
        return [
            ProviderView(c.provider, c.live_workers)
            for c in tx.providers.search_with_live_workers()
        ]


def _get(provider: Provider | None, name: str) -> Provider:
    if provider is None:
        raise ProviderNotFound(f"no provider named {name!r}")
    return provider


def _spec_fields(spec: ProviderSpec) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in EDITABLE}


def _checked(provider_type: str, f: Mapping[str, Any], validate: ConfigValidator) -> dict[str, Any]:
    """Normalised, validated fields, or one InvalidConfiguration naming every problem."""
    problems: list[str] = []
    raw_config = f.get("config") or {}
    if not isinstance(raw_config, Mapping):
        raise InvalidConfiguration(
            f"invalid provider: config must be a mapping, got {type(raw_config).__name__}"
        )
    _storable("config", raw_config, problems)
    if problems:
        raise InvalidConfiguration("invalid provider: " + "; ".join(problems))
    config = validate(provider_type, dict(raw_config))
    priority = _int(f.get("priority", 0), "priority", -1000, 1000, problems)
    max_workers = _int(f.get("max_workers", 2), "max_workers", 0, 10_000, problems)
    min_workers = _int(f.get("min_workers", 0), "min_workers", 0, 10_000, problems)
    if not problems and min_workers > max_workers:
        problems.append(f"min_workers ({min_workers}) is more than max_workers ({max_workers})")
    labels = _labels(f.get("labels"), problems)
    regions = tuple(
        dict.fromkeys(
            r.strip() for r in _texts("allowed region", f.get("allowed_regions"), problems)
        )
    )
    preferred = (
        "".join(_texts("preferred region", [f.get("preferred_region") or ""], problems)).strip()
        or None
    )
    if preferred and regions and preferred not in regions:
        problems.append(f"preferred region {preferred} is not among the allowed regions")
    health_check = _health_check(f.get("health_check") or {}, problems)
    if problems:
        raise InvalidConfiguration("invalid provider: " + "; ".join(problems))
    return {
        "config": config,
        "priority": priority,
        "max_workers": max_workers,
        "min_workers": min_workers,
        "labels": labels,
        "preferred_region": preferred,
        "allowed_regions": regions,
        "health_check": health_check,
    }


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidConfiguration(
            f"provider name {name!r:.60} is not valid: lowercase letters, digits, '.', '_' "
            "and '-', at most 63, starting and ending with a letter or digit"
        )
    return name


def _int(value: Any, name: str, low: int, high: int, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name} must be a whole number from {low} to {high}")
        return 0
    return value


def _storable(where: str, value: Any, problems: list[str]) -> None:
    """Config is stored as JSON: no NUL or lone surrogate in its text, no nan or inf
    (JSON input may spell them NaN and Infinity)."""
    if isinstance(value, str):
        if (problem := text_problem(value)) is not None:
            problems.append(f"{where} {problem}")
    elif isinstance(value, float):
        if number_problem(value, -math.inf, math.inf) is not None:
            problems.append(f"{where} must be a finite number, got {value!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _storable(f"{where}.{quoted(key, 20).strip(chr(39))}", key, problems)
            _storable(f"{where}.{quoted(key, 20).strip(chr(39))}", item, problems)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _storable(f"{where}[{i}]", item, problems)


def _labels(value: Any, problems: list[str]) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        problems.append("labels must be a mapping of keys to strings")
        return {}
    for key, label in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            problems.append(f"label key {quoted(key)} is not valid")
        elif not isinstance(label, str) or len(label) > 63 or label_problem(label):
            problems.append(f"label {key} must be a printable string of at most 63 characters")
    return dict(value)


def _texts(what: str, value: Any, problems: list[str]) -> list[str]:
    """The non-empty strings of ``value`` (a list), each one printable and at most 63."""
    if not value:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]
    for text in value:
        if not isinstance(text, str) or len(text) > 63 or label_problem(text):
            problems.append(f"{what} {quoted(text)} must be a printable string of at most 63")
            return []
    return [t for t in value if t.strip()]


def _health_check(value: Mapping[str, Any], problems: list[str]) -> dict[str, float]:
    unknown = sorted(set(value) - set(DEFAULT_HEALTH_CHECK))
    if unknown:
        problems.append(f"unknown health_check field {', '.join(unknown)}")
    out = dict(DEFAULT_HEALTH_CHECK)
    for key in DEFAULT_HEALTH_CHECK:
        if key in value:
            number = value[key]
            if number_problem(number, 0, 86400) is not None or number <= 0:
                problems.append(f"health_check.{key} must be a positive number of seconds")
            else:
                out[key] = float(number)
    return out


_SECRET_KEYS = ("password", "token", "secret")


def _public(value: Any) -> Any:
    """Config as shown in events: values of secret-looking keys masked, and the
    credentials of any URL (a worker ``environment``'s HODEI_DATABASE_URL)."""
    if isinstance(value, Mapping):
        return {
            k: "***" if any(s in str(k).lower() for s in _SECRET_KEYS) else _public(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    if isinstance(value, str):
        return mask_url(value)
    return plain(value)
