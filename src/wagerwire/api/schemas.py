"""Response models shared by every router (the JSON error body)."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ErrorBody", "ErrorResponse"]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
