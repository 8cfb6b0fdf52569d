"""The OPA-server engine. Against a real ``opa`` binary where one is on PATH (push and bundle mode, decisions equal to
the embedded engine's, fail-closed errors); everywhere, the parts that need no OPA: URL and path handling, policy
ids, data placement, argument checks, and real network failures (a closed port, a peer that never answers, a web
server that is not OPA). Nothing here imitates OPA's answers.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.policy.base import EngineClosed, PolicyEngineError
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.policy.opa_server import (
    OpaAddress,
    OpaServerEngine,
    data_writes,
    package_path,
    parse_opa_url,
    policy_id,
    rule_endpoint,
)
from gateway.settings import REPO_POLICIES

OPA = shutil.which("opa")
requires_opa = pytest.mark.skipif(
    OPA is None, reason="no `opa` binary on PATH: the OPA-server engine is tested where one exists"
)
PRE, RELEASE = "data.mediagate.pre.decision", "data.mediagate.release.decision"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- no OPA needed -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8181", OpaAddress("127.0.0.1", 8181, False)),
        ("https://opa.internal", OpaAddress("opa.internal", 443, True)),
        ("http://localhost/", OpaAddress("localhost", 80, False)),
        (" http://[::1]:9000 ", OpaAddress("[::1]", 9000, False)),
    ],
)
def test_urls_are_split_for_the_client(url: str, address: OpaAddress) -> None:
    assert parse_opa_url(url) == address


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8181", "must look like http://host:port"),
        ("ftp://opa:21", "must look like http://host:port"),
        ("http://", "must look like http://host:port"),
        ("http://opa:8181/v1", "without path"),
        ("http://user:pw@opa:8181", "without path, query or credentials"),
        ("http://opa:8181?x=1", "without path"),
        ("http://opa:99999", "invalid port"),
    ],
)
def test_malformed_urls_are_refused_with_the_url_named(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        OpaServerEngine(load_bundle(REPO_POLICIES), url=url)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [("data.mediagate.pre.decision", "mediagate/pre/decision"), ("data.a", "a"), ("data.a_1.B2._c", "a_1/B2/_c")],
)
def test_rule_paths_become_data_api_paths(path: str, endpoint: str) -> None:
    assert rule_endpoint(path) == endpoint


@pytest.mark.parametrize("path", ["mediagate.pre.decision", "data", "data.", "data.a..b", "data.a/b", "data.a[0]",
                                  "data.a.b c", "data.1a"])
def test_other_paths_are_refused(path: str) -> None:
    with pytest.raises(PolicyEngineError, match="not a rule path"):
        rule_endpoint(path)


def test_policy_ids_are_the_bundle_paths_under_a_prefix() -> None:
    assert policy_id("mediagate-gateway", "mediagate/pre/pre.rego") == "mediagate-gateway/mediagate/pre/pre.rego"
    for rel in ("../x.rego", "a//b.rego", "a b.rego", "a/%2e.rego", "./x.rego"):
        with pytest.raises(PolicyEngineError, match="letters, digits"):
            policy_id("p", rel)


def test_packages_are_read_from_the_source() -> None:
    assert package_path("x.rego", "# c\npackage mediagate.pre\n\nx := 1") == ("mediagate", "pre")
    with pytest.raises(PolicyEngineError, match="x.rego: no package"):
        package_path("x.rego", "x := 1")


def test_bundle_data_is_written_beside_the_packages_not_over_them() -> None:
    bundle = load_bundle(REPO_POLICIES)
    packages = [package_path(rel, src) for rel, src in bundle.policies]
    writes = data_writes(bundle.data, packages)
    # mediagate and mediagate.quota hold packages: their data goes beside them, a document per data key
    assert [where for where, _ in writes] == ["mediagate/config", "mediagate/quota/config"]
    assert writes[0][1] == bundle.data["mediagate"]["config"]
    assert writes[1][1] == bundle.data["mediagate"]["quota"]["config"]
    assert data_writes({"a": {"b": {"x": {"k": 1}}, "c": {"d": {"y": {}}}}, "top": {"z": 3}},
                       [("a", "b"), ("a", "c", "d")]) == [("a/b/x", {"k": 1}), ("a/c/d/y", {}), ("top", {"z": 3})]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": {"b": 1}}, r"data\.a\.b: push mode writes objects only, this is a int"),
        ({"a": 1}, r"data\.a is data but also a package path"),
        ({"a": {"b c": {}}}, r"data\.a\.b c: push mode can only write data keys"),
    ],
)
def test_data_that_cannot_be_pushed_is_refused_with_its_path(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyEngineError, match=message):
        data_writes(data, [("a", "p")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "pull"}, "`mode` must be 'push' or 'bundle' but is 'pull'"),
        ({"timeout_s": 0}, "`timeout_s` must be positive but is 0"),
        ({"retries": -1}, "`retries` must be at least 0 but is -1"),
        ({"id_prefix": "a b"}, "`id_prefix` must be letters"),
    ],
)
def test_arguments_are_checked_before_any_connection(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpaServerEngine(load_bundle(REPO_POLICIES), url="http://127.0.0.1:1", **kwargs)


def test_push_mode_needs_a_bundle() -> None:
    with pytest.raises(ValueError, match="`bundle` is required in push mode"):
        OpaServerEngine(url="http://127.0.0.1:1")


@pytest.mark.parametrize("mode", ["push", "bundle"])
def test_a_closed_port_fails_closed_at_start(mode: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    with pytest.raises(PolicyEngineError, match=rf"cannot reach OPA at {url}: .*(refused|Errno)"):
        OpaServerEngine(load_bundle(REPO_POLICIES), url=url, mode=mode, retries=0)  # type: ignore[arg-type]


def test_a_peer_that_never_answers_times_out() -> None:
    """A listening socket that is never read: the TCP handshake completes, no HTTP answer ever comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(PolicyEngineError, match=rf"no answer from OPA at {url} within 0.3 s"):
            OpaServerEngine(url=url, mode="bundle", timeout_s=0.3, retries=0)
        assert time.monotonic() - start < 5


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """Python's own static file server on loopback: a real HTTP server that is not OPA (a wrong URL)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_server_that_is_not_opa_fails_closed(web_server: str) -> None:
    with pytest.raises(PolicyEngineError, match=r"GET policies: OPA answered HTTP 404"):
        OpaServerEngine(load_bundle(REPO_POLICIES), url=web_server, retries=0)
    with pytest.raises(PolicyEngineError, match=r"GET data system/bundles: the answer from .* is not JSON"):
        OpaServerEngine(url=web_server, mode="bundle", retries=0)


def test_gateway_code_never_imports_the_oracle() -> None:
    """opa_bindings enables http.send and is a test-only dependency: it must stay out of the serving path."""
    gateway = REPO_POLICIES.parent / "gateway"
    offenders = [p for p in gateway.rglob("*.py") if "opa_bindings" in p.read_text()]
    assert offenders == []


# -- against a real OPA ------------------------------------------------------------------------------------------


class OpaProcess:
    """``opa run --server`` on a free loopback port, ready once ``/health`` answers 200."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        assert OPA is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"opa-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [OPA, "run", "--server", "--addr", f"127.0.0.1:{self.port}", "--disable-telemetry",
                 "--log-level", "error", *args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"opa exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health?bundles", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"opa did not become healthy within 20 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have paused it
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_opa(tmp_path: Path) -> Iterator[Callable[..., OpaProcess]]:
    """Factory: ``start_opa(*extra_args)``; every server it started is stopped afterwards."""
    started: list[OpaProcess] = []

    def start(*args: str) -> OpaProcess:
        started.append(OpaProcess(tmp_path, *args))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def embedded() -> Iterator[EmbeddedRegoEngine]:
    engine = EmbeddedRegoEngine(load_bundle(REPO_POLICIES), workers=1)
    yield engine
    engine.close()


def concept_ids() -> list[str]:
    return list(load_bundle(REPO_POLICIES).data["mediagate"]["config"].get("concepts", {}))


def pre_input(text: str = "a red bicycle on a quiet street", tenant: str = "demo", **request: Any) -> dict[str, Any]:
    req = {"kind": "prompt", "model": "demo-tiny", "prompt": text, "negative_prompt": None, "template": None,
           "fields": {}, "locale": None, "n": 1, "width": 256, "height": 256, "seed": 7, "text": text, "brand": None,
           **request}
    feats = {"normalized": text.lower(), "folded": text.lower(), "changed": False, "mixed_script": False,
             "concepts": dict.fromkeys(concept_ids(), 0.05)}
    return {"principal": {"tenant": tenant, "role": "app", "key_id": "k1"}, "request": req, "features": feats,
            "context": {"time": "2026-11-25T10:00:00Z", "usage": {"template_assets": 0}}}


def release_input(*nsfw: float) -> dict[str, Any]:
    cards = [{"complete": True, "scores": {"nsfw": {"nsfw": p}, "perceptual": {"quality": 0.8}}, "failed": {}}
             for p in nsfw]
    return {**pre_input(), "obligations": {"watermark": True, "max_n": 4, "force_review": False, "review_reasons": []},
            "images": [{"index": i, "card": c} for i, c in enumerate(cards)]}


DECISIONS = [
    (PRE, pre_input()),
    (PRE, pre_input("a scene full of gore")),
    (PRE, pre_input(n=9, model="sdxl")),
    (PRE, pre_input("logo of competitorco", tenant="acme")),
    (PRE, pre_input(tenant="restricted")),
    (RELEASE, release_input(0.01)),
    (RELEASE, release_input(0.97)),
    (RELEASE, release_input(0.5, 0.01)),
    (RELEASE, release_input()),
]


@pytest.fixture
def pushed(start_opa: Callable[..., OpaProcess]) -> Iterator[tuple[OpaProcess, OpaServerEngine]]:
    server = start_opa()
    engine = OpaServerEngine(load_bundle(REPO_POLICIES), url=server.url, timeout_s=2.0, retries=0)
    yield server, engine
    engine.close()


@requires_opa
def test_push_mode_uploads_the_bundle_verbatim(pushed: tuple[OpaProcess, OpaServerEngine]) -> None:
    server, engine = pushed
    bundle = load_bundle(REPO_POLICIES)
    assert engine.revision == bundle.label
    engine.check()
    held = requests.get(f"{server.url}/v1/policies", timeout=5).json()["result"]
    ours = {p["id"]: p["raw"] for p in held}
    assert ours == {f"mediagate-gateway/{rel}": source for rel, source in bundle.policies}  # never rewritten
    config = requests.get(f"{server.url}/v1/data/mediagate/config", timeout=5).json()["result"]
    assert config == bundle.data["mediagate"]["config"]


@requires_opa
@pytest.mark.parametrize(("path", "input_doc"), DECISIONS)
def test_push_mode_decides_like_the_embedded_engine(
    pushed: tuple[OpaProcess, OpaServerEngine], embedded: EmbeddedRegoEngine, path: str, input_doc: dict[str, Any]
) -> None:
    _, engine = pushed
    assert engine.evaluate(path, input_doc) == embedded.evaluate(path, input_doc)


@requires_opa
def test_a_new_revision_replaces_the_old_one_and_drops_removed_modules(
    start_opa: Callable[..., OpaProcess], tmp_path: Path
) -> None:
    server = start_opa()
    extended = tmp_path / "extended"
    shutil.copytree(REPO_POLICIES, extended)
    (extended / "mediagate/extra").mkdir()
    (extended / "mediagate/extra/extra.rego").write_text("package mediagate.extra\n\nanswer := 42\n")
    first = OpaServerEngine(load_bundle(extended), url=server.url, retries=0)
    assert first.evaluate("data.mediagate.extra.answer", {}) == 42
    second = OpaServerEngine(load_bundle(REPO_POLICIES), url=server.url, retries=0)
    ids = {p["id"] for p in requests.get(f"{server.url}/v1/policies", timeout=5).json()["result"]}
    assert "mediagate-gateway/mediagate/extra/extra.rego" not in ids
    with pytest.raises(PolicyEngineError, match="undefined"):
        second.evaluate("data.mediagate.extra.answer", {})
    second.check()
    first.close()
    second.close()


@requires_opa
def test_a_broken_revision_is_refused_and_the_previous_one_keeps_serving(
    pushed: tuple[OpaProcess, OpaServerEngine], tmp_path: Path
) -> None:
    server, engine = pushed
    broken = tmp_path / "broken"
    shutil.copytree(REPO_POLICIES, broken)
    pre = broken / "mediagate/pre/pre.rego"
    pre.write_text(pre.read_text() + "\nbroken if { undefined_function(1) }\n")
    with pytest.raises(PolicyEngineError, match=r"refused the push: .*pre\.rego"):
        OpaServerEngine(load_bundle(broken), url=server.url, retries=0)
    engine.check()  # rolled back: what the old engine pushed is what OPA holds
    assert engine.evaluate(PRE, pre_input())["allow"] is True


@requires_opa
def test_bundle_mode_reads_the_revision_from_opa_and_decides_alike(
    start_opa: Callable[..., OpaProcess], tmp_path: Path, embedded: EmbeddedRegoEngine
) -> None:
    served = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, served)  # served as-is, tests included, as `opa run -s -b policies/` does
    server = start_opa("--bundle", str(served))
    bundle = load_bundle(REPO_POLICIES)
    engine = OpaServerEngine(bundle, url=server.url, mode="bundle", retries=0)
    try:
        assert engine.revision == bundle.revision
        assert engine.bundle_name is not None
        engine.check()
        for path, input_doc in DECISIONS:
            assert engine.evaluate(path, input_doc) == embedded.evaluate(path, input_doc)
    finally:
        engine.close()


@requires_opa
def test_bundle_mode_refuses_a_revision_other_than_the_gateways(
    start_opa: Callable[..., OpaProcess], tmp_path: Path
) -> None:
    served = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, served)
    manifest = served / ".manifest"
    manifest.write_text(manifest.read_text().replace(load_bundle(REPO_POLICIES).revision, "someone-else"))
    server = start_opa("--bundle", str(served))
    with pytest.raises(PolicyEngineError, match="serves bundle revision 'someone-else'"):
        OpaServerEngine(load_bundle(REPO_POLICIES), url=server.url, mode="bundle", retries=0)


@requires_opa
def test_bundle_mode_needs_a_bundle(start_opa: Callable[..., OpaProcess]) -> None:
    server = start_opa()
    with pytest.raises(PolicyEngineError, match="serves no bundle"):
        OpaServerEngine(url=server.url, mode="bundle", retries=0)


@requires_opa
def test_undefined_is_an_error_not_a_decision(pushed: tuple[OpaProcess, OpaServerEngine]) -> None:
    _, engine = pushed
    with pytest.raises(PolicyEngineError, match=r"data\.mediagate\.pre\.no_such_rule is undefined"):
        engine.evaluate("data.mediagate.pre.no_such_rule", pre_input())
    with pytest.raises(PolicyEngineError, match="not a rule path"):
        engine.evaluate("mediagate.pre.decision", pre_input())
    for not_json in (float("nan"), {"a set"}):
        with pytest.raises(PolicyEngineError, match=f"{PRE}: the document sent to OPA is not JSON"):
            engine.evaluate(PRE, {"principal": {"value": not_json}})


@requires_opa
def test_builtin_errors_fail_closed_instead_of_going_undefined(start_opa: Callable[..., OpaProcess], tmp_path: Path
                                                              ) -> None:
    """Without strict-builtin-errors OPA would make `to_number("x")` undefined and this deny would not fire."""
    root = tmp_path / "strict"
    shutil.copytree(REPO_POLICIES, root)
    (root / "mediagate/strict").mkdir()
    (root / "mediagate/strict/strict.rego").write_text(
        "package mediagate.strict\n\ndeny contains \"bad\" if to_number(input.n) > 1\n\nallow if count(deny) == 0\n"
    )
    engine = OpaServerEngine(load_bundle(root), url=start_opa().url, retries=0)
    try:
        with pytest.raises(PolicyEngineError, match=r"HTTP (400|500): .*to_number"):
            engine.evaluate("data.mediagate.strict.allow", {"n": "not a number"})
    finally:
        engine.close()


@requires_opa
def test_a_killed_server_fails_closed(pushed: tuple[OpaProcess, OpaServerEngine]) -> None:
    server, engine = pushed
    assert engine.evaluate(PRE, pre_input())["allow"] is True
    server.proc.kill()
    server.proc.wait()
    with pytest.raises(PolicyEngineError, match=rf"{PRE}: cannot reach OPA at {server.url}"):
        engine.evaluate(PRE, pre_input())
    with pytest.raises(PolicyEngineError, match="not healthy"):
        engine.check()


@requires_opa
def test_a_hung_server_times_out(start_opa: Callable[..., OpaProcess]) -> None:
    """SIGSTOP freezes the real OPA: the kernel still accepts the connection, no answer comes."""
    server = start_opa()
    engine = OpaServerEngine(load_bundle(REPO_POLICIES), url=server.url, timeout_s=0.5, retries=0)
    try:
        server.proc.send_signal(signal.SIGSTOP)
        with pytest.raises(PolicyEngineError, match=rf"{PRE}: no answer from OPA at {server.url} within 0.5 s"):
            engine.evaluate(PRE, pre_input())
    finally:
        server.proc.send_signal(signal.SIGCONT)
        engine.close()


def forget_all_policies(url: str) -> None:
    """Delete every module, dependants first: OPA refuses (400) to delete a module others still use."""
    while ids := [p["id"] for p in requests.get(f"{url}/v1/policies", timeout=5).json()["result"]]:
        deleted = [i for i in ids if requests.delete(f"{url}/v1/policies/{i}", timeout=5).status_code == 200]
        assert deleted, f"OPA refused to delete any of {ids}"


@requires_opa
def test_a_restarted_server_is_not_ready_until_pushed_again(start_opa: Callable[..., OpaProcess]) -> None:
    server = start_opa()
    engine = OpaServerEngine(load_bundle(REPO_POLICIES), url=server.url, retries=0)
    try:
        forget_all_policies(server.url)  # what a restart of OPA does to pushed policies
        with pytest.raises(PolicyEngineError, match="does not hold policy"):
            engine.check()
        with pytest.raises(PolicyEngineError, match="undefined"):
            engine.evaluate(PRE, pre_input())
        engine.push()
        engine.check()
    finally:
        engine.close()


@requires_opa
def test_a_closed_engine_refuses_calls(pushed: tuple[OpaProcess, OpaServerEngine]) -> None:
    _, engine = pushed
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineClosed, match="closed"):
        engine.evaluate(PRE, pre_input())
    with pytest.raises(PolicyEngineError, match="closed"):
        engine.check()
