"""Provider selection (docs/providers.md, "Selection"): a table of cases, with the reasons."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from hodei.domain.records import Provider
from hodei.domain.selection import Candidate, Requirements, select_provider
from hodei.domain.states import ProviderHealth, ProviderStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def provider(name: str, live: int = 0, **fields: Any) -> Candidate:
    values: dict[str, Any] = {"health": ProviderHealth.HEALTHY, **fields}
    return Candidate(Provider(uuid.uuid4(), name, "docker", NOW, NOW, **values), live)


CASES = [
    pytest.param(
        Requirements(),
        [provider("a")],
        "a",
        {},
        id="the only provider",
    ),
    pytest.param(
        Requirements(labels={"gpu": "true"}),
        [provider("cpu", labels={"arch": "x86"}), provider("gpu", labels={"gpu": "true"})],
        "gpu",
        {"cpu": "missing label gpu=true"},
        id="labels must be a subset",
    ),
    pytest.param(
        Requirements(labels={"gpu": "true"}),
        [provider("x", labels={"gpu": "TRUE"})],
        None,
        {"x": "missing label gpu=true"},
        id="labels are case-sensitive",
    ),
    pytest.param(
        Requirements(regions=("eu-west",)),
        [
            provider("us", allowed_regions=("us-east",)),
            provider("eu", allowed_regions=("eu-west", "eu-south")),
            provider("any"),
        ],
        "any",
        {
            "us": "regions us-east do not include eu-west",
            "eu": "tie broken by name in favour of any",
        },
        id="regions intersect; empty means any",
    ),
    pytest.param(
        Requirements(regions=("eu-west",)),
        [provider("any"), provider("eu", preferred_region="eu-west")],
        "eu",
        {"any": "eu is in a preferred region"},
        id="preferred region breaks a priority tie",
    ),
    pytest.param(
        Requirements(regions=("eu-west",)),
        [provider("high", priority=5), provider("eu", preferred_region="eu-west")],
        "high",
        {"eu": "lower priority (0 < 5)"},
        id="priority before preferred region",
    ),
    pytest.param(
        Requirements(),
        [
            provider("off", status=ProviderStatus.DISABLED, priority=9),
            provider("draining", status=ProviderStatus.DRAINING, priority=9),
            provider("on"),
        ],
        "on",
        {"off": "status is DISABLED", "draining": "status is DRAINING"},
        id="only ACTIVE providers",
    ),
    pytest.param(
        Requirements(),
        [
            provider(
                "sick", health=ProviderHealth.UNHEALTHY, health_message="engine down", priority=9
            ),
            provider("ok"),
        ],
        "ok",
        {"sick": "health is UNHEALTHY: engine down"},
        id="UNHEALTHY is never selected",
    ),
    pytest.param(
        Requirements(),
        [provider("limping", health=ProviderHealth.DEGRADED), provider("zz-fine")],
        "zz-fine",
        {"limping": "health is DEGRADED and zz-fine is HEALTHY"},
        id="DEGRADED is eligible but ranks after HEALTHY",
    ),
    pytest.param(
        Requirements(),
        [provider("unknown", health=ProviderHealth.UNKNOWN)],
        "unknown",
        {},
        id="UNKNOWN health (not yet checked) is eligible",
    ),
    pytest.param(
        Requirements(),
        [provider("zero", max_workers=0, priority=9), provider("one", max_workers=1)],
        "one",
        {"zero": "no capacity (max_workers=0)"},
        id="no capacity at all",
    ),
    pytest.param(
        Requirements(),
        [provider("busy", live=2, max_workers=2), provider("idle", live=0, max_workers=2)],
        "idle",
        {"busy": "fewer free worker slots (0 < 2)"},
        id="free slots spread the load",
    ),
    pytest.param(
        Requirements(),
        [provider("full", live=2, max_workers=2)],
        "full",
        {},
        id="a full provider still queues the job behind its workers",
    ),
    pytest.param(
        Requirements(provider="b"),
        [provider("a", priority=9), provider("b")],
        "b",
        {"a": "job asks for provider b"},
        id="a named provider",
    ),
    pytest.param(
        Requirements(provider="nope"),
        [provider("a")],
        None,
        {"a": "job asks for provider nope", "nope": "no provider has this name"},
        id="a named provider that does not exist",
    ),
    pytest.param(
        Requirements(labels={"os": "linux"}, regions=("ap",)),
        [
            provider("p1", labels={"os": "linux"}, allowed_regions=("eu",)),
            provider("p2", status=ProviderStatus.DISABLED),
        ],
        None,
        {"p1": "regions eu do not include ap", "p2": "status is DISABLED"},
        id="nothing matches: every reason is reported",
    ),
    pytest.param(Requirements(), [], None, {}, id="no providers at all"),
]


@pytest.mark.parametrize(("requirements", "candidates", "chosen", "rejected"), CASES)
def test_selection(
    requirements: Requirements,
    candidates: list[Candidate],
    chosen: str | None,
    rejected: dict[str, str],
) -> None:
    selection = select_provider(requirements, candidates)

    assert (selection.chosen.name if selection.chosen else None) == chosen
    assert selection.rejected == rejected
    if chosen is None:
        assert selection.reason == "no provider matches"
    else:
        assert selection.reason.startswith("matched: priority")


def test_the_reason_names_the_matched_labels_and_region() -> None:
    selection = select_provider(
        Requirements(labels={"gpu": "true"}, regions=("eu",)),
        [provider("g", labels={"gpu": "true"}, preferred_region="eu", priority=3)],
    )
    assert selection.reason == "matched: priority 3, labels gpu=true, preferred region eu"


def test_selection_is_deterministic_whatever_the_order() -> None:
    candidates = [provider(n) for n in ("c", "a", "b")]
    picks = {
        select_provider(Requirements(), order).chosen.name  # type: ignore[union-attr]
        for order in (candidates, candidates[::-1], candidates[1:] + candidates[:1])
    }
    assert picks == {"a"}
