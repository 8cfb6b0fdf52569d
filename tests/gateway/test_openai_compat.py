"""The real ``openai`` SDK against the gateway served by uvicorn on loopback."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image


@pytest.fixture
def served(gateway: Any, serve: Any) -> tuple[str, Any]:
    return serve(gateway), gateway


@pytest.fixture
def client() -> Iterator[Callable[[str, dict[str, str]], openai.OpenAI]]:
    """Factory: an SDK client for a base URL and key headers, closed at teardown (a client kept alive by an
    exception's traceback would otherwise leave its connection for the garbage collector to find, in some later
    test)."""
    made: list[openai.OpenAI] = []

    def make(base: str, headers: dict[str, str]) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{base}/v1", api_key=headers["Authorization"].removeprefix("Bearer "),
                                  max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def test_sdk_b64_round_trip(served: tuple[str, Any], client: Callable[..., openai.OpenAI]) -> None:
    base, gw = served
    app = gw.key()
    result = client(base, app).images.generate(
        model="demo-tiny", prompt="a watercolour fox", n=2, size="128x128", response_format="b64_json", user="u-42"
    )
    assert len(result.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.size == (128, 128)
    governance = result.model_extra["mediagate"]  # type: ignore[index]
    assert governance["decision"] == "release"
    entry = httpx.get(f"{base}/v1/audit/entries/{governance['audit_entry']}", headers=app).json()
    assert entry["payload"]["request"]["end_user"] == "u-42"


def test_sdk_url_response_is_downloadable(served: tuple[str, Any], client: Callable[..., openai.OpenAI]) -> None:
    base, gw = served
    app = gw.key()
    result = client(base, app).images.generate(prompt="a lighthouse", size="128x128")
    url = result.data[0].url or ""
    assert url.startswith(base)
    assert httpx.get(url, headers=app).headers["content-type"] == "image/png"


def test_sdk_raises_on_policy_denial(served: tuple[str, Any], client: Callable[..., openai.OpenAI]) -> None:
    base, gw = served
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(base, gw.key()).images.generate(prompt="a castle covered in gore", size="128x128")
    assert info.value.status_code == 403
    body: Any = info.value.body
    assert body["code"] == "prompt.banned_term"
    assert "banned term" in body["message"]


def test_sdk_raises_on_bad_input(served: tuple[str, Any], client: Callable[..., openai.OpenAI]) -> None:
    base, gw = served
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client(base, gw.key()).images.generate(prompt="a cat", size="100x100", model="demo-tiny")
    body: Any = info.value.body
    assert body["param"] == "size"


def test_sdk_raises_on_bad_key(served: tuple[str, Any], client: Callable[..., openai.OpenAI]) -> None:
    base, _ = served
    with pytest.raises(openai.AuthenticationError):
        client(base, {"Authorization": "Bearer mg_wrong"}).images.generate(prompt="a cat")
