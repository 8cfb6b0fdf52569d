"""Structured logs: JSON lines naming the request and tenant, as ``mediagate serve`` configures them for uvicorn."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from gateway.logs import configure_logging
from gateway.request_id import bound


@pytest.fixture
def configure() -> Iterator[Callable[..., io.StringIO]]:
    """``configure(fmt, level)`` -> the stream the root logger now writes to; the root logger is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def make(fmt: str = "json", level: str = "INFO") -> io.StringIO:
        stream = io.StringIO()
        configure_logging(fmt, level, stream=stream)  # type: ignore[arg-type]
        return stream

    yield make
    root.handlers, root.level = saved[0], saved[1]


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_documented_fields(configure: Callable[..., io.StringIO]) -> None:
    stream = configure("json", "INFO")
    log = logging.getLogger("mediagate.test")
    with bound("req-1", "acme"):
        log.info("rendered %d images", 3, extra={"model": "demo-tiny"})
        try:
            raise ValueError("bad pixels")
        except ValueError:
            log.exception("scorer failed")
    log.warning("outside any request")
    log.debug("below the level")
    first, second, third = json_lines(stream)
    assert first["message"] == "rendered 3 images" and first["model"] == "demo-tiny"
    assert first["level"] == "INFO" and first["logger"] == "mediagate.test"
    assert (first["request_id"], first["tenant"]) == ("req-1", "acme")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert abs(datetime.fromisoformat(first["ts"]).timestamp() - time.time()) < 60
    assert second["exc_type"] == "ValueError" and "bad pixels" in second["exc"] and second["level"] == "ERROR"
    assert (third["request_id"], third["tenant"]) == (None, None) and "exc" not in third


def test_the_text_format_names_the_request(configure: Callable[..., io.StringIO]) -> None:
    stream = configure("text", "WARNING")
    with bound("req-2"):
        logging.getLogger("mediagate.test").warning("slow scorer")
        logging.getLogger("mediagate.test").info("not shown")
    [line] = stream.getvalue().splitlines()
    assert line.endswith("WARNING mediagate.test [req-2]: slow scorer")


def test_served_by_uvicorn_every_line_is_json_and_the_access_line_is_ours(
        gateway: Any, configure: Callable[..., io.StringIO]) -> None:
    """As ``mediagate serve`` runs it: uvicorn's own lines go through the JSON handler, its access log is off."""
    import uvicorn

    from gateway.app import create_app

    stream = configure("json", "INFO")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=gateway.runtime), host="127.0.0.1", port=port,
                                           log_level="info", log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={
            "X-Request-ID": "served-1", **gateway.key()})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200 and resp.headers["X-Request-ID"] == "served-1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    records = json_lines(stream)  # every line parses as JSON
    assert all("color_message" not in r for r in records)  # uvicorn's copy of the message with colour codes
    assert any(r["logger"] == "uvicorn.error" and "Uvicorn running" in r["message"] for r in records)
    access = [r for r in records if r["logger"] in ("mediagate.access", "uvicorn.access")]
    assert [(r["logger"], r["path"], r["status"], r["request_id"], r["tenant"]) for r in access] == [
        ("mediagate.access", "/v1/models", 200, "served-1", "demo")]
