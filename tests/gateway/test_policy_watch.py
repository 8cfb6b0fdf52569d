"""Hot reload: editing the bundle directory of a running gateway activates the edit, or refuses it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.policy.bundle import load_bundle
from gateway.settings import REPO_POLICIES


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_edits_are_activated_and_broken_edits_refused(make_gateway: Any, tmp_path: Path) -> None:
    policy_dir = tmp_path / "live"
    shutil.copytree(REPO_POLICIES, policy_dir)
    gw = make_gateway(policy_dir=policy_dir, policy_watch=True, policy_watch_debounce_ms=100)
    app, admin = gw.key("demo", "app"), gw.key("trust", "policy-admin")
    watcher = gw.runtime.watcher
    assert watcher is not None
    original = gw.runtime.policy.revision

    data_file = policy_dir / "mediagate/config/data.json"
    data = json.loads(data_file.read_text())
    data["defaults"]["banned_terms"].append("zeppelin")
    data_file.write_text(json.dumps(data))
    assert wait_for(lambda: gw.runtime.policy.revision == load_bundle(policy_dir).label)
    assert gw.runtime.policy.revision != original
    denied = gw.client.post("/v1/generations", headers=app, json={"prompt": "a zeppelin", "size": "128x128"})
    assert denied.status_code == 403 and denied.json()["codes"] == ["prompt.banned_term"]

    active = gw.runtime.policy.revision
    proposals = watcher.proposals
    rego = policy_dir / "mediagate/pre/pre.rego"
    rego.write_text(rego.read_text() + "\nbroken if {\n")
    assert wait_for(lambda: watcher.proposals > proposals)
    assert gw.runtime.policy.revision == active  # the broken edit changed nothing
    history = gw.client.get("/v1/policies", headers=admin).json()["history"]
    assert history[0]["event"] == "refused" and history[0]["source"] == "directory"
    assert any("mediagate/pre/pre.rego:" in p for p in history[0]["detail"]["problems"])
    still = gw.client.post("/v1/generations", headers=app, json={"prompt": "a zeppelin", "size": "128x128"})
    assert still.status_code == 403


def test_watching_is_off_when_disabled(make_gateway: Any) -> None:
    assert make_gateway(policy_watch=False).runtime.watcher is None
