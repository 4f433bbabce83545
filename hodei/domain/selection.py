"""Choosing the provider that runs a job (docs/providers.md, "Selection"). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hodei.domain.records import Provider
from hodei.domain.states import ProviderHealth, ProviderStatus


@dataclass(frozen=True)
class Candidate:
    """A provider with the numbers selection needs."""

    provider: Provider
    live_workers: int = 0


@dataclass(frozen=True)
class Requirements:
    """What a job asks of its provider."""

    labels: Mapping[str, str] = field(default_factory=dict)
    regions: Sequence[str] = ()
    provider: str | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen provider (or None) and why each other provider was passed over."""

    chosen: Provider | None
    reason: str
    rejected: dict[str, str] = field(default_factory=dict)


def select_provider(requirements: Requirements, candidates: Sequence[Candidate]) -> Selection:
    """Pick the provider for a job.

    Eligible: ACTIVE, not UNHEALTHY, the job's labels a subset of the provider's,
    regions intersecting (empty means any) and capacity left (a free worker slot, or a
    live worker the job can queue behind). Among those: highest priority, then a
    provider whose preferred region the job allows, then name.
    """
    rejected: dict[str, str] = {}
    eligible: list[Candidate] = []
    for candidate in candidates:
        why = _rejection(requirements, candidate)
        if why is None:
            eligible.append(candidate)
        else:
            rejected[candidate.provider.name] = why
    if requirements.provider is not None and not any(
        c.provider.name == requirements.provider for c in candidates
    ):
        rejected[requirements.provider] = "no provider has this name"
    if not eligible:
        return Selection(None, "no provider matches", rejected)
    eligible.sort(key=lambda c: _rank(requirements, c))
    chosen, *others = eligible
    for other in others:
        rejected[other.provider.name] = _lost_to(requirements, other, chosen)
    return Selection(chosen.provider, _chosen_because(requirements, chosen), rejected)


def _rejection(req: Requirements, candidate: Candidate) -> str | None:
    p = candidate.provider
    if req.provider is not None and p.name != req.provider:
        return f"job asks for provider {req.provider}"
    if p.status is not ProviderStatus.ACTIVE:
        return f"status is {p.status}"
    if p.health is ProviderHealth.UNHEALTHY:
        return f"health is UNHEALTHY{': ' + p.health_message if p.health_message else ''}"
    missing = [f"{k}={v}" for k, v in req.labels.items() if p.labels.get(k) != v]
    if missing:
        return f"missing label {', '.join(missing)}"
    if req.regions and p.allowed_regions and not set(req.regions) & set(p.allowed_regions):
        return f"regions {','.join(p.allowed_regions)} do not include {','.join(req.regions)}"
    # A provider at max_workers still takes jobs: they queue behind its live workers.
    # One that may run no worker at all (max_workers 0) has no capacity.
    if p.max_workers <= 0:
        return f"no capacity (max_workers={p.max_workers})"
    return None


def _rank(req: Requirements, candidate: Candidate) -> tuple[int, int, int, int, str]:
    """Priority first, then a preferred region the job allows, then HEALTHY before
    DEGRADED, then free worker slots (spread the load), then name (stable)."""
    p = candidate.provider
    preferred = 0 if p.preferred_region and p.preferred_region in req.regions else 1
    degraded = 1 if p.health is ProviderHealth.DEGRADED else 0
    free = max(p.max_workers - candidate.live_workers, 0)
    return (-p.priority, preferred, degraded, -free, p.name)


def _lost_to(req: Requirements, loser: Candidate, winner: Candidate) -> str:
    lose, win = _rank(req, loser), _rank(req, winner)
    if loser.provider.priority < winner.provider.priority:
        return f"lower priority ({loser.provider.priority} < {winner.provider.priority})"
    if lose[1] > win[1]:
        return f"{winner.provider.name} is in a preferred region"
    if lose[2] > win[2]:
        return f"health is DEGRADED and {winner.provider.name} is HEALTHY"
    if lose[3] > win[3]:
        return f"fewer free worker slots ({-lose[3]} < {-win[3]})"
    return f"tie broken by name in favour of {winner.provider.name}"


def _chosen_because(req: Requirements, chosen: Candidate) -> str:
    p = chosen.provider
    parts = [f"priority {p.priority}"]
    if req.labels:
        parts.append("labels " + ",".join(f"{k}={v}" for k, v in req.labels.items()))
    if req.regions and p.preferred_region in req.regions:
        parts.append(f"preferred region {p.preferred_region}")
    return "matched: " + ", ".join(parts)
