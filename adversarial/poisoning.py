"""Pipeline-poisoning checks: hostile inputs are quarantined with a clear reason and never take the gateway down.

Three families, each sent through the production code path:

- **templates**: malformed template files (bad JSON, nesting bombs, duplicate keys, boxes off the canvas, huge
  canvases, thousands of slots, undecodable bytes) must be refused by the template loader with a ``ValueError``
  naming the file, never another exception (a traceback at start-up is a crash, not a refusal);
- **prompts**: pathological requests (megabyte prompts, combining-mark and zero-width floods, bidi overrides, NUL
  bytes, lone surrogates, nesting bombs, wrong types) sent over HTTP to ``POST /v1/generations``;
- **images**: hostile uploads (decompression bombs, truncated and polyglot files, zero-size and odd-mode images,
  SVG, animated GIFs with many frames, EXIF bombs) sent to ``POST /v1/score`` and ``POST /v1/provenance/verify``;
- **jobs**: an async job whose template text cannot be rendered must fail with its problem, and the next job must
  still complete (the job worker survives).

A case passes when the answer is a 4xx problem+json naming its rule (or a policy decision with its reasons, for a
prompt the policy rightly judges), within ``max_seconds``, and the gateway still answers ``/healthz`` and a canary
request afterwards. Anything else (a 5xx, a timeout, an unexpected exception, a dead worker) is a failure.
"""

from __future__ import annotations

import io
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

CANARY = {"template": "product-square", "fields": {"headline": "Canary boots", "cta": "Shop now"}}


@dataclass
class CaseResult:
    family: str
    name: str
    ok: bool
    outcome: str  # what happened: "422 invalid-input image_format", "ValueError: template file ...", ...
    seconds: float
    reason: str = ""  # why a failed case failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PoisoningResult:
    cases: list[CaseResult] = field(default_factory=list)
    gateway_alive: bool = True
    seconds: float = 0.0

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"cases": [c.as_dict() for c in self.cases], "total": len(self.cases),
                "failures": len(self.failures), "gateway_alive": self.gateway_alive, "seconds": self.seconds}


# -- templates -----------------------------------------------------------------------------------------------------

def _template(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "poison", "title": "Poison", "width": 512, "height": 512,
        "background": {"colour": "#ffffff"},
        "slots": [{"name": "headline", "box": [16, 16, 480, 120], "required": True, "max_chars": 60}],
    }
    base.update(overrides)
    return base


def template_cases() -> dict[str, bytes]:
    """Malformed template files, by name: each must be refused naming the file."""
    return {
        "not json": b"{ this is not json",
        "nesting bomb": b"[" * 100_000 + b"]" * 100_000,
        "object nesting bomb": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "duplicate keys": b'{"id": "a", "id": "b"}',
        "not utf-8": b'{"id": "caf\xe9"}',
        "top level array": b"[1, 2, 3]",
        "box off the canvas": json.dumps(_template(slots=[{"name": "h", "box": [400, 400, 500, 500]}])).encode(),
        "huge canvas": json.dumps(_template(width=1_000_000, height=1_000_000)).encode(),
        "ten thousand slots": json.dumps(_template(slots=[
            {"name": f"s{i}", "box": [0, 0, 8, 8]} for i in range(10_000)])).encode(),
        "negative box": json.dumps(_template(slots=[{"name": "h", "box": [-10, 0, 100, 100]}])).encode(),
        "box of strings": json.dumps(_template(slots=[{"name": "h", "box": ["0", "0", "1e9", "1e9"]}])).encode(),
        "empty file": b"",
    }


def check_templates(directory: Path, max_seconds: float) -> list[CaseResult]:
    from generators.template_file import load_template_file

    results: list[CaseResult] = []
    for name, data in template_cases().items():
        path = directory / f"poison-{len(results)}.json"
        path.write_bytes(data)
        start = time.perf_counter()
        try:
            load_template_file(path)
            outcome, ok, reason = "loaded", False, "a malformed template was accepted"
        except ValueError as exc:
            outcome = f"ValueError: {str(exc)[:200]}"
            ok, reason = str(path) in str(exc), "" if str(path) in str(exc) else "the refusal does not name the file"
        except Exception as exc:  # noqa: BLE001 - anything but a ValueError is the finding this check exists for
            outcome, ok, reason = f"{type(exc).__name__}: {str(exc)[:200]}", False, "not refused cleanly"
        seconds = time.perf_counter() - start
        if ok and seconds > max_seconds:
            ok, reason = False, f"took {seconds:.1f} s (limit {max_seconds} s)"
        results.append(CaseResult("templates", name, ok, outcome, seconds, reason))
    return results


# -- HTTP cases ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpCase:
    family: str
    name: str
    method: str
    path: str
    kwargs: Callable[[], dict[str, Any]]
    policy_may_decide: bool = False  # a 200/403 policy decision (with reasons) is also a clean answer


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _bomb_png(side: int = 60_000) -> bytes:
    ihdr = b"IHDR" + side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
            + len(idat).to_bytes(4, "big") + b"IDAT" + idat + zlib.crc32(b"IDAT" + idat).to_bytes(4, "big"))


def _gif_frames(frames: int = 2000) -> bytes:
    out = io.BytesIO()
    images = [Image.new("P", (64, 64), i % 256) for i in range(frames)]
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=1)
    return out.getvalue()


def _exif_bomb() -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a large EXIF block
    Image.new("RGB", (32, 32), (90, 120, 150)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def _image_cases() -> dict[str, Callable[[], bytes]]:
    valid = _png(Image.new("RGB", (96, 96), (120, 130, 140)))
    return {
        "decompression bomb": _bomb_png,
        "truncated png": lambda: valid[: len(valid) // 2],
        "png+zip polyglot": lambda: valid + b"PK\x03\x04" + b"\x00" * 200,
        "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><!ENTITY x "x"></svg>',
        "plain text": lambda: b"definitely not an image",
        "empty": lambda: b"",
        "cmyk jpeg": lambda: _jpeg_cmyk(),
        "animated gif with 2000 frames": _gif_frames,
        "exif bomb jpeg": _exif_bomb,
        "alpha png": lambda: _png(Image.new("RGBA", (32, 32), (1, 2, 3, 4))),
    }


def _jpeg_cmyk() -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", (32, 32)).save(out, format="JPEG")
    return out.getvalue()


def _json(body: Any) -> Callable[[], dict[str, Any]]:
    return lambda: {"content": json.dumps(body).encode() if not isinstance(body, bytes) else body,
                    "headers": {"Content-Type": "application/json"}}


def http_cases() -> list[HttpCase]:
    prompts: list[HttpCase] = [
        HttpCase("prompts", "megabyte prompt", "POST", "/v1/generations", _json({"prompt": "a cat " * 200_000})),
        HttpCase("prompts", "combining-mark flood", "POST", "/v1/generations",
                 _json({"prompt": "a" + "\u0301" * 1500}), policy_may_decide=True),
        HttpCase("prompts", "zero-width flood", "POST", "/v1/generations",
                 _json({"prompt": "a cat" + "\u200b\u200c\u200d" * 600}), policy_may_decide=True),
        HttpCase("prompts", "bidi override", "POST", "/v1/generations",
                 _json({"prompt": "\u202eerog a\u202c lovely picnic"}), policy_may_decide=True),
        HttpCase("prompts", "NUL bytes", "POST", "/v1/generations", _json({"prompt": "a cat\x00\x00 on a mat"}),
                 policy_may_decide=True),
        HttpCase("prompts", "lone surrogate", "POST", "/v1/generations",
                 _json(b'{"prompt": "a cat \\ud800 on a mat"}'), policy_may_decide=True),
        HttpCase("prompts", "json nesting bomb", "POST", "/v1/generations",
                 _json(b'{"prompt": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")),
        HttpCase("prompts", "prompt is an object", "POST", "/v1/generations", _json({"prompt": {"$ne": ""}})),
        HttpCase("prompts", "fields flood", "POST", "/v1/generations",
                 _json({"template": "product-square", "fields": {f"f{i}": "x" for i in range(5000)}})),
        HttpCase("prompts", "template text that cannot fit", "POST", "/v1/generations",
                 _json({"template": "product-square", "fields": {"headline": "W" * 120, "cta": "W" * 24}}),
                 policy_may_decide=True),
        HttpCase("prompts", "near-miss flood", "POST", "/v1/generations",
                 _json({"prompt": " ".join(["gorgeous goreish g0rgeous"] * 60)}), policy_may_decide=True),
    ]
    def upload(make: Callable[[], bytes]) -> Callable[[], dict[str, Any]]:
        return lambda: {"files": [("image", ("upload.bin", make()))]}

    images = [  # a file that is a valid image after all (a PNG with a ZIP appended) may be judged: 200 + a decision
        HttpCase("images", f"{name} -> {path}", "POST", path, upload(make), policy_may_decide=True)
        for name, make in _image_cases().items() for path in ("/v1/score", "/v1/provenance/verify")
    ]
    return prompts + images


def _answer_ok(case: HttpCase, status: int, body: Any) -> tuple[bool, str]:
    if status >= 500:
        return False, f"server error {status}"
    if case.policy_may_decide and status in (200, 403):
        decided = isinstance(body, dict) and ("decision" in body or "verdict" in body or bool(body.get("codes")))
        return bool(decided), "" if decided else "a 200/403 without a decision or codes"
    if 400 <= status < 500:
        named = isinstance(body, dict) and bool(body.get("type")) and bool(body.get("detail"))
        return named, "" if named else "a 4xx without a problem+json body"
    return False, f"accepted with {status}"


def check_http(client: Any, headers: dict[str, str], auditor_headers: dict[str, str], max_seconds: float
               ) -> list[CaseResult]:
    results = []
    for case in http_cases():
        start = time.perf_counter()
        try:
            kwargs = case.kwargs()
            role = auditor_headers if case.path == "/v1/provenance/verify" else headers
            kwargs["headers"] = {**role, **kwargs.get("headers", {})}
            resp = client.request(case.method, case.path, **kwargs)
            try:
                body = resp.json()
            except ValueError:
                body = None
            ok, reason = _answer_ok(case, resp.status_code, body)
            detail = ""
            if isinstance(body, dict):
                detail = (body.get("rule") or ",".join(body.get("codes") or []) or body.get("decision")
                          or body.get("verdict") or "")
            outcome = f"{resp.status_code} {detail}".strip()
        except Exception as exc:  # noqa: BLE001 - an exception escaping the app is a failure to report
            ok, reason, outcome = False, "the request raised", f"{type(exc).__name__}: {str(exc)[:200]}"
        seconds = time.perf_counter() - start
        if ok and seconds > max_seconds:
            ok, reason = False, f"took {seconds:.1f} s (limit {max_seconds} s)"
        results.append(CaseResult(case.family, case.name, ok, outcome, seconds, reason))
    return results


def check_jobs(client: Any, headers: dict[str, str], max_seconds: float) -> list[CaseResult]:
    """A job that cannot render fails with its problem (or is refused before it is queued); the job after it still
    completes."""
    def run(body: dict[str, Any]) -> dict[str, Any]:
        resp = client.post("/v1/generations", json={**body, "async": True}, headers=headers)
        if resp.status_code != 202:
            return {"status": f"refused {resp.status_code}", "error": resp.json()}
        job = resp.json()
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            state: dict[str, Any] = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
            if state["status"] in ("completed", "failed", "cancelled"):
                return state
            time.sleep(0.05)
        return {"status": "timeout"}

    start = time.perf_counter()
    bad = run({"template": "product-square", "fields": {"headline": "W" * 120, "cta": "W" * 24}})
    good = run(CANARY)
    seconds = time.perf_counter() - start
    ok = (bad["status"] in ("failed", "completed") or bad["status"].startswith("refused 4")) \
        and good["status"] == "completed"
    problem = (bad.get("error") or {}).get("rule") or bad.get("decision") or bad["status"]
    return [CaseResult("jobs", "unrenderable job, then a good one", ok,
                       f"bad job {bad['status']} ({problem}); next job {good['status']}", seconds,
                       "" if ok else "the worker did not survive a poisoned job")]


def alive(client: Any, headers: dict[str, str]) -> bool:
    health = client.get("/healthz")
    canary = client.post("/v1/generations", json=CANARY, headers=headers)
    return health.status_code == 200 and canary.status_code == 200 and "decision" in canary.json()


def run_poisoning(client: Any, headers: dict[str, str], auditor_headers: dict[str, str], scratch: Path, *,
                  max_seconds: float = 30.0) -> PoisoningResult:
    """Every family against a running app (``client``: an httpx/TestClient-like object; ``headers``: an app key of
    the tenant, ``auditor_headers``: an auditor key, for provenance verification)."""
    start = time.perf_counter()
    result = PoisoningResult()
    result.cases += check_templates(scratch, max_seconds)
    result.cases += check_http(client, headers, auditor_headers, max_seconds)
    result.cases += check_jobs(client, headers, max_seconds)
    result.gateway_alive = alive(client, headers)
    result.seconds = time.perf_counter() - start
    return result

