"""JSON request bodies: ``Content-Type: application/json`` required, then decoded and checked.

A body sent as ``text/plain``, a form or without a type is refused with 415
``unsupported_media_type`` before it is read: those are the types a web page on any origin
may POST without a CORS preflight (a ``no-cors`` fetch or a form), so a hub on the user's
machine would otherwise take them. ``curl -d`` needs ``-H 'Content-Type: application/json'``
(``--json`` sets it). A body that is not JSON is ``malformed_json``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from wagerwire.errors import BadParameter, MalformedJson, UnsupportedMediaType

__all__ = ["json_body", "parse_json_body"]

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the required JSON request body."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
    }}}


async def parse_json_body(request: Request, model: type[M]) -> M:
    """Decode and validate the body; raise UnsupportedMediaType, MalformedJson or BadParameter
    with the reason."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as Content-Type: application/json, not {media_type or 'no type'!r}"
        )
    raw = await request.body()
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedJson("request body must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        raise BadParameter("; ".join(parts)) from exc
