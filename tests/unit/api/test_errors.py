"""REST error rendering (api/errors.py, api/bodies.py), in process: no server, no socket."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel
from starlette.requests import Request

from wagerwire.api.bodies import parse_json_body
from wagerwire.api.errors import render_error
from wagerwire.errors import (
    BadParameter,
    MalformedJson,
    RateLimited,
    UnsupportedMediaType,
    WagerwireError,
)


def test_an_error_is_its_code_message_and_status() -> None:
    response = render_error(BadParameter("limit: must be 1-1000"))
    assert response.status_code == 422
    assert orjson.loads(bytes(response.body)) == {
        "error": {"code": "bad_parameter", "message": "limit: must be 1-1000"}}


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert render_error(RateLimited("slow down", retry_after=0.2)).headers["retry-after"] == "1"
    assert render_error(RateLimited("slow down", retry_after=61.6)).headers["retry-after"] == "62"


class _Body(BaseModel):
    channel: str


def _request(body: bytes, content_type: str | None) -> Request:
    headers = [(b"content-type", content_type.encode())] if content_type else []
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers,
                    "query_string": b""}, receive)


@pytest.mark.parametrize(("body", "content_type", "error"), [
    (b'{"channel":"game:crash"}', "text/plain", UnsupportedMediaType),
    (b'{"channel":"game:crash"}', None, UnsupportedMediaType),
    (b"channel=game:crash", "application/x-www-form-urlencoded", UnsupportedMediaType),
    (b"{not json", "application/json", MalformedJson),
    (b"[1, 2]", "application/json", MalformedJson),
    (b'{"channel": 5}', "application/json", BadParameter),
])
async def test_bodies_are_json_objects_of_the_model(
    body: bytes, content_type: str | None, error: type[WagerwireError]
) -> None:
    with pytest.raises(error):
        await parse_json_body(_request(body, content_type), _Body)


async def test_a_good_body_parses() -> None:
    parsed = await parse_json_body(_request(b'{"channel":"game:crash"}',
                                            "application/json; charset=utf-8"), _Body)
    assert parsed.channel == "game:crash"
