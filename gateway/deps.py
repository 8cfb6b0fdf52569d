"""FastAPI dependencies as ``Annotated`` aliases: the runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.auth import Principal, authenticate
from gateway.request_id import note_tenant
from gateway.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    principal = authenticate(runtime.db, authorization)
    note_tenant(principal.tenant)  # for the request's log lines
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
