"""Audit over HTTP and the CLI: signed checkpoints, proofs a verifier checks offline, export, verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gateway.cli import main


def fill(gw: Any, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        resp = gw.client.post("/v1/generations", headers=headers,
                              json={"template": "product-square", "fields": {"headline": f"Deal {i}", "cta": "Buy"}})
        assert resp.status_code == 200, resp.text
        bodies.append(resp.json())
    return bodies


def test_checkpoint_proof_and_consistency_verify_offline(
    gateway: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = gateway.key("demo", "app")
    first = fill(gateway, app, 3)
    old = gateway.client.get("/v1/audit/checkpoint", headers=app).json()
    fill(gateway, app, 4)
    new = gateway.client.get("/v1/audit/checkpoint", headers=app).json()
    assert new["tree_size"] > old["tree_size"] >= 4  # the start-up policy activation, then the generations

    proof = gateway.client.get(f"/v1/audit/entries/{first[1]['audit_entry']}/proof", headers=app).json()
    assert proof["tree_size"] == new["tree_size"] and proof["checkpoint"]["note"] == new["note"]
    consistency = gateway.client.get(f"/v1/audit/consistency?from={old['tree_size']}", headers=app).json()

    public = str(gateway.runtime.settings.keys.checkpoint_public)
    files = {"proof.json": json.dumps(proof), "consistency.json": json.dumps(consistency),
             "old.note": old["note"], "new.note": new["note"]}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    p = {name: str(tmp_path / name) for name in files}
    assert main(["audit", "verify-proof", "--proof", p["proof.json"], "--checkpoint", p["new.note"],
                 "--public-key", public]) == 0
    assert f"entry {first[1]['audit_entry']}" in capsys.readouterr().out
    assert main(["audit", "verify-proof", "--proof", p["consistency.json"], "--checkpoint", p["old.note"],
                 "--checkpoint", p["new.note"], "--public-key", public]) == 0
    assert "is a prefix of" in capsys.readouterr().out

    forged = {**proof, "entry": {**proof["entry"], "payload": {**proof["entry"]["payload"], "decision": "reject"}}}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert main(["audit", "verify-proof", "--proof", str(tmp_path / "forged.json"), "--checkpoint", p["new.note"],
                 "--public-key", public]) == 1
    assert "was altered" in capsys.readouterr().err
    assert main(["audit", "verify-proof", "--proof", p["proof.json"], "--checkpoint", p["old.note"],
                 "--public-key", public]) == 1  # a proof for another tree size


def test_proofs_are_tenant_scoped_and_checked(gateway: Any) -> None:
    mine, theirs = gateway.key("demo", "app"), gateway.key("other", "app")
    body = fill(gateway, mine, 2)[0]
    url = f"/v1/audit/entries/{body['audit_entry']}/proof"
    assert gateway.client.get(url, headers=theirs).status_code == 404
    too_big = gateway.client.get(url + "?tree_size=10000", headers=mine)
    assert too_big.status_code == 422 and too_big.json()["field"] == "tree_size"
    bad = gateway.client.get("/v1/audit/consistency?from=3&to=2", headers=mine)
    assert bad.status_code == 422 and bad.json()["rule"] == "size_order"
    assert gateway.client.get("/v1/audit/consistency", headers=mine).status_code == 422  # `from` is required


def test_checkpoints_are_written_outside_the_database(gateway: Any) -> None:
    fill(gateway, gateway.key(), 2)
    checkpoint = gateway.client.get("/v1/audit/checkpoint", headers=gateway.key()).json()
    directory = gateway.runtime.settings.checkpoint_dir
    assert (directory / "latest.note").read_text() == checkpoint["note"]
    assert (directory / f"checkpoint-{checkpoint['tree_size']}.note").exists()


def test_verify_and_export_from_the_cli(
    gateway: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIAGATE_HOME", str(gateway.home))
    fill(gateway, gateway.key(), 3)
    note = gateway.client.get("/v1/audit/checkpoint", headers=gateway.key()).json()["note"]
    (tmp_path / "kept.note").write_text(note)
    assert main(["audit", "verify", "--checkpoint", str(tmp_path / "kept.note")]) == 0
    out = capsys.readouterr().out
    assert "audit log intact: 4 entries verified" in out and "2 checkpoint signatures verified" in out
    assert main(["audit", "export", "--format", "jsonl", "--out", str(tmp_path / "log.jsonl")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4] and lines[0]["kind"] == "policy.activated"
    assert main(["audit", "export", "--format", "parquet", "--out", str(tmp_path / "log.parquet")]) == 0
    table = pq.read_table(tmp_path / "log.parquet")
    assert table.num_rows == 4 and table.column("hash").to_pylist() == [r["hash"] for r in lines]


def test_keys_init_signing_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init-signing", "--dir", str(tmp_path / "k")]) == 0
    assert "checkpoint-ed25519.pub.pem" in capsys.readouterr().out
    assert main(["keys", "init-signing", "--dir", str(tmp_path / "k")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
