"""The gateway's audit store stamps every payload shape with the request id, and the chain still verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from audit.chain import Canonical
from gateway.audit_store import RequestAuditStore, encode
from gateway.db import make_engine
from gateway.request_id import bound


@pytest.fixture
def store(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path}/audit.db")
    RequestAuditStore.create_schema(engine)
    yield engine, RequestAuditStore()
    engine.dispose()


@pytest.mark.parametrize("shape", ["mapping", "canonical", "stamped"])
def test_each_payload_shape_gets_the_request_id(store: Any, shape: str) -> None:
    engine, audit = store
    with bound("req-abc"), Session(engine) as session:
        payload = {"decision": "release", "n": 2}
        given = {"mapping": payload, "canonical": Canonical.of(payload), "stamped": encode(payload)}[shape]
        entry = audit.append(session, tenant="t", kind="test", payload=given)
        session.commit()
    assert dict(entry.payload) == {"decision": "release", "n": 2, "request_id": "req-abc"}
    with Session(engine) as session:
        assert audit.verify(session).ok


def test_outside_a_request_and_an_explicit_id_are_left_alone(store: Any) -> None:
    engine, audit = store
    with Session(engine) as session:
        plain = audit.append(session, tenant="t", kind="test", payload={"decision": "expired"})
        with bound("req-outer"):
            own = audit.append(session, tenant="t", kind="test", payload={"request_id": "upstream-1"})
        session.commit()
    assert dict(plain.payload) == {"decision": "expired"}
    assert dict(own.payload) == {"request_id": "upstream-1"}
    with Session(engine) as session:
        assert audit.verify(session).ok
