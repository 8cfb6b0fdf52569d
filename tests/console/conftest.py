"""Console fixtures: a gateway whose bundle holds every generation of two tenants for review, held items made
through the real flow, and browsers (HTTP clients with their own cookie jars) signed in as reviewers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

TENANTS = ("careful", "other")


@pytest.fixture
def console_gateway(make_gateway: Any, make_policy_dir: Any) -> Any:
    """Tenants ``careful`` and ``other`` have every generation held for review (set in data, as a trust team would)."""
    return make_gateway(policy_dir=make_policy_dir(tenants={t: {"force_review": True} for t in TENANTS}))


@pytest.fixture
def make_held(console_gateway: Any) -> Callable[..., dict[str, Any]]:
    """Factory: ``make_held(tenant, prompt)`` -> the response body of a generation the release policy held."""
    gw = console_gateway
    apps: dict[str, dict[str, str]] = {}

    def make(tenant: str = "careful", prompt: str = "a lighthouse at dusk") -> dict[str, Any]:
        app = apps.setdefault(tenant, gw.key(tenant, "app"))
        resp = gw.client.post("/v1/generations", headers=app, json={"prompt": prompt, "size": "128x128"})
        assert resp.status_code == 200 and resp.json()["decision"] == "review", resp.text
        return dict(resp.json())

    return make


@dataclass
class Browser:
    """A cookie-keeping client of the app, as a browser would be; ``csrf`` is scraped from the last page."""

    client: TestClient
    key: str
    tenant: str
    csrf: str = ""

    def sign_in(self) -> Any:
        resp = self.client.post("/console/login", data={"key": self.key}, follow_redirects=False)
        assert resp.status_code == 303, resp.text
        self.page("/console")
        return resp

    def page(self, path: str) -> Any:
        resp = self.client.get(path, follow_redirects=False)
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', resp.text)
        if found:
            self.csrf = found.group(1)
        return resp

    def approve(self, review_id: str, reason: str = "checked by hand", action: str = "approve") -> Any:
        return self.client.post(f"/console/api/reviews/{review_id}/{action}", json={"reason": reason},
                                headers={"X-CSRF-Token": self.csrf})

    def approve_form(self, review_id: str, reason: str = "checked by hand", action: str = "approve") -> Any:
        return self.client.post(f"/console/reviews/{review_id}/{action}",
                                data={"reason": reason, "csrf_token": self.csrf}, follow_redirects=False)


@dataclass
class Console:
    """Everything a console test needs: the gateway, held items, signed-in browsers and the state to check."""

    gateway: Any
    held: Callable[..., dict[str, Any]]
    browsers: list[TestClient]

    def browser(self, tenant: str = "careful", role: str = "reviewer", signed_in: bool = True) -> Browser:
        """A :class:`Browser` with a fresh key of ``tenant`` and ``role``, signed in unless told otherwise."""
        key = self.gateway.key(tenant, role)["Authorization"].removeprefix("Bearer ")
        # Not entered as a context manager: the app (and its runtime) is already started by the gateway's client.
        client = TestClient(self.gateway.client.app, raise_server_exceptions=False)
        self.browsers.append(client)
        browser = Browser(client, key, tenant)
        if signed_in:
            browser.sign_in()
        return browser

    def pending(self, tenant: str = "careful") -> list[str]:
        """The tenant's pending reviews, as the JSON review API reports them (not through the console)."""
        resp = self.gateway.client.get("/v1/reviews", headers=self.gateway.key(tenant, "reviewer"))
        return [r["id"] for r in resp.json()["data"]]

    def audit_kinds(self, tenant: str = "careful") -> list[str]:
        resp = self.gateway.client.get("/v1/audit/entries", headers=self.gateway.key(tenant, "auditor"),
                                       params={"limit": 500})
        return [e["kind"] for e in resp.json()["data"]]


@pytest.fixture
def console(console_gateway: Any, make_held: Callable[..., dict[str, Any]]) -> Iterator[Console]:
    made: list[TestClient] = []
    yield Console(console_gateway, make_held, made)
    for client in made:
        client.close()
