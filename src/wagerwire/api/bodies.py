"""JSON request bodies parsed whatever the Content-Type says.

``curl -d '{…}'`` sends ``application/x-www-form-urlencoded``; a feed server should still read
the JSON it was given, and answer ``malformed_json`` when it is not JSON, rather than a
validation error about form fields.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from wagerwire.errors import BadParameter, MalformedJson

__all__ = ["json_body", "parse_json_body"]

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the required JSON request body."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
    }}}


async def parse_json_body(request: Request, model: type[M]) -> M:
    """Decode and validate the body; raise MalformedJson or BadParameter with the reason."""
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
