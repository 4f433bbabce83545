"""/v1/providers, /v1/workers, /v1/worker-tokens and /v1/tokens (API tokens)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from hodei.api.auth import Admin, Operator, Viewer, client_for
from hodei.api.wire import (
    ApiTokenOut,
    ApiTokenRequest,
    CreatedApiToken,
    ProviderRequest,
    WhoAmI,
    WorkerTokenOut,
    WorkerTokenRequest,
)
from hodei.domain.records import Provider, Worker
from hodei.services.fleet.provider_registry import ProviderView
from hodei.services.fleet.provider_removal import Removal
from hodei.services.ports.providers import HealthReport

router = APIRouter(prefix="/v1")


@router.get("/providers", tags=["providers"], summary="Providers (role: viewer)")
def providers(request: Request, who: Viewer) -> list[ProviderView]:
    return client_for(request, who).providers()


@router.get("/providers/{name}", tags=["providers"], summary="One provider (role: viewer)")
def provider(request: Request, who: Viewer, name: str) -> ProviderView:
    return client_for(request, who).provider(name)


@router.post("/providers", status_code=201, tags=["providers"], summary="Add a provider (operator)")
def add_provider(request: Request, who: Operator, body: ProviderRequest) -> Provider:
    return client_for(request, who).add_provider(body.name, body.provider_type, **body.fields)


@router.patch("/providers/{name}", tags=["providers"], summary="Change a provider (operator)")
def update_provider(
    request: Request, who: Operator, name: str, changes: Annotated[dict[str, Any], Body()]
) -> Provider:
    return client_for(request, who).update_provider(name, **changes)


@router.delete(
    "/providers/{name}",
    tags=["providers"],
    summary="Remove a provider; refused while in use unless force (role: operator)",
)
def remove_provider(request: Request, who: Operator, name: str, force: bool = False) -> Removal:
    return client_for(request, who).remove_provider(name, force=force)


@router.post("/providers/{name}/enable", tags=["providers"], summary="(role: operator)")
def enable_provider(request: Request, who: Operator, name: str) -> Provider:
    return client_for(request, who).enable_provider(name)


@router.post("/providers/{name}/disable", tags=["providers"], summary="(role: operator)")
def disable_provider(request: Request, who: Operator, name: str) -> Provider:
    return client_for(request, who).disable_provider(name)


@router.post("/providers/{name}/drain", tags=["providers"], summary="(role: operator)")
def drain_provider(request: Request, who: Operator, name: str) -> Provider:
    return client_for(request, who).drain_provider(name)


@router.post(
    "/providers-health",
    tags=["providers"],
    summary="Check providers' health now and store it (role: operator)",
)
def provider_health(
    request: Request, who: Operator, name: str | None = None
) -> dict[str, HealthReport]:
    return client_for(request, who).check_provider_health(name)


@router.get("/workers", tags=["workers"], summary="Workers, newest first (role: viewer)")
def workers(
    request: Request,
    who: Viewer,
    all_states: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Worker]:
    return client_for(request, who).workers(all_states=all_states, limit=limit)


@router.get("/workers/{worker_id}", tags=["workers"], summary="One worker (role: viewer)")
def worker(request: Request, who: Viewer, worker_id: str) -> Worker:
    return client_for(request, who).worker(worker_id)


@router.post("/workers/{worker_id}/drain", tags=["workers"], summary="(role: operator)")
def drain_worker(request: Request, who: Operator, worker_id: str) -> Worker:
    return client_for(request, who).drain_worker(worker_id)


@router.post(
    "/worker-tokens",
    status_code=201,
    tags=["workers"],
    summary="A worker bootstrap token; its secret is in this response only (operator)",
)
def worker_token(request: Request, who: Operator, body: WorkerTokenRequest) -> WorkerTokenOut:
    issued = client_for(request, who).create_worker_token(body.provider, ttl_s=body.ttl_s)
    return WorkerTokenOut(
        token=issued.secret,
        worker_id=issued.worker.id,
        queue=issued.worker.queue,
        expires_at=issued.expires_at,
    )


@router.get("/whoami", tags=["tokens"], summary="The caller's token name and role (viewer)")
def whoami(who: Viewer) -> WhoAmI:
    return WhoAmI(name=who.name, role=str(who.role), actor=who.actor)


@router.get("/tokens", tags=["tokens"], summary="API tokens, never their secrets (admin)")
def api_tokens(request: Request, who: Admin, include_revoked: bool = False) -> list[ApiTokenOut]:
    tokens = client_for(request, who).api_tokens(include_revoked=include_revoked)
    return [ApiTokenOut.of(t) for t in tokens]


@router.post(
    "/tokens",
    status_code=201,
    tags=["tokens"],
    summary="Create an API token; its secret is in this response only (admin)",
)
def create_api_token(request: Request, who: Admin, body: ApiTokenRequest) -> CreatedApiToken:
    expires = None if body.expires_in_s is None else timedelta(seconds=body.expires_in_s)
    token, secret = client_for(request, who).create_api_token(
        body.name, body.role, expires_in=expires
    )
    return CreatedApiToken(**ApiTokenOut.of(token).model_dump(), token=secret)


@router.delete("/tokens/{name}", tags=["tokens"], summary="Revoke an API token (admin)")
def revoke_api_token(request: Request, who: Admin, name: str) -> ApiTokenOut:
    return ApiTokenOut.of(client_for(request, who).revoke_api_token(name))
