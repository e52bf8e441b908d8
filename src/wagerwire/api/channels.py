"""Native REST: channels, history and publish (DESIGN.md "Native API v1")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.api.auth import caller
from wagerwire.api.bodies import json_body, parse_json_body
from wagerwire.api.deps import Services, services
from wagerwire.api.params import Digits
from wagerwire.api.responses import JsonResponse, message_json
from wagerwire.api.schemas import ErrorResponse
from wagerwire.auth.identity import Identity
from wagerwire.core.channels import validate_channel
from wagerwire.errors import BadParameter, Forbidden, NotFound
from wagerwire.types import now_ms

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["channels"])


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed JSON or invalid channel"},
    404: {"model": ErrorResponse, "description": "unknown channel"},
    413: {"model": ErrorResponse, "description": "body larger than allowed"},
    422: {"model": ErrorResponse, "description": "parameter out of range"},
}


class ChannelOut(BaseModel):
    name: str
    epoch: str
    last_offset: int
    first_offset: int | None
    count: int
    last_ts: int | None
    subscribers: int


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class MessageOut(BaseModel):
    channel: str
    offset: int
    epoch: str
    ts: int = Field(description="ms since the epoch, when the hub accepted it")
    data: Any
    attrs: dict[str, str] | None = Field(
        default=None, description="attributes given at publish (present when any)"
    )


class MessagePage(BaseModel):
    channel: str
    epoch: str
    first_offset: int | None
    last_offset: int
    messages: list[MessageOut]
    next: int | None = Field(description="pass as since= for the next page; null at the end")


class PublishIn(BaseModel):
    channel: str = Field(examples=["game:crash"])
    data: Any = Field(description="any JSON value")
    attrs: dict[str, str] | None = Field(default=None, description="filterable attributes")
    idempotency_key: str | None = Field(default=None, max_length=200)


class PublishOut(BaseModel):
    channel: str
    epoch: str
    offset: int
    duplicate: bool


@router.get("/channels", response_model=ChannelList, summary="Every channel with positions")
async def list_channels(svc: Annotated[Services, Depends(services)],
                        who: Annotated[Identity, Depends(caller)]) -> Response:
    hub = svc.hub
    infos = [i for i in await hub.store.channels() if svc.gate.may_read(who, i.name)]
    counts = hub.local_subscriber_counts()
    return JsonResponse({"channels": [
        {"name": i.name, "epoch": i.epoch, "last_offset": i.last_offset,
         "first_offset": i.first_offset, "count": i.count, "last_ts": i.last_ts,
         "subscribers": counts.get(i.name, 0)}
        for i in infos
    ]})


@router.get(
    "/channels/{channel}/messages",
    response_model=MessagePage,
    responses=ERRORS,
    summary="History of one channel, by offset",
)
async def channel_messages(
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Identity, Depends(caller)],
    channel: Annotated[str, Path(description="channel name, e.g. game:crash")],
    since: Annotated[int, Digits, Query(ge=0, description="return offsets greater than this")] = 0,
    limit: Annotated[int, Digits, Query(ge=1, le=1000)] = 100,
) -> Response:
    validate_channel(channel)
    channel = svc.gate.resolve_channel(who, channel)
    hub = svc.hub
    info = await hub.store.channel_info(channel)
    if info is None:
        raise NotFound(f"channel {channel} has no messages")
    if since > info.last_offset:
        raise BadParameter(
            f"since={since} is in the future: the latest offset of {channel} is "
            f"{info.last_offset}"
        )
    messages = await hub.store.read(channel, since, limit)
    last = messages[-1].offset if messages else since
    _, delay_ms = svc.gate.delivery_rate(who)
    if delay_ms:
        # A delayed plan reads history as late as its streams: nothing newer than the delay.
        cutoff = now_ms() - delay_ms
        kept = [m for m in messages if m.ts <= cutoff]
        if len(kept) < len(messages):
            messages, last = kept, info.last_offset  # no next page yet
    return JsonResponse({
        "channel": channel,
        "epoch": info.epoch,
        "first_offset": info.first_offset,
        "last_offset": info.last_offset,
        "messages": [message_json(m) for m in messages],
        "next": last if last < info.last_offset else None,
    })


class ImageOut(BaseModel):
    channel: str
    epoch: str
    offset: int = Field(description="the channel's offset the image stands at; resume from it")
    image: list[MessageOut] = Field(description="the latest message per key, by offset")


@router.get(
    "/channels/{channel}/image",
    response_model=ImageOut,
    responses={**ERRORS, 403: {"model": ErrorResponse,
                               "description": "not readable, or the plan is delayed"}},
    summary="Snapshot image of a conflating channel: the latest message per key",
)
async def channel_image(
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Identity, Depends(caller)],
    channel: Annotated[str, Path(description="a conflating channel, e.g. odds:football:epl")],
) -> Response:
    validate_channel(channel)
    channel = svc.gate.resolve_channel(who, channel)
    if svc.gate.delivery_rate(who)[1]:
        raise Forbidden("a delayed plan has no snapshot image (it would show the present); "
                        "read the channel's history")
    hub = svc.hub
    info = await hub.store.channel_info(channel)
    if info is None:
        raise NotFound(f"channel {channel} has no messages")
    offset, image = await hub.image(channel)
    return JsonResponse({"channel": channel, "epoch": info.epoch, "offset": offset,
                         "image": [message_json(m) for m in image]})


@router.post(
    "/publish",
    response_model=PublishOut,
    responses={**ERRORS, 503: {"model": ErrorResponse, "description": "store unavailable"}},
    summary="Publish one message (acknowledged once durable)",
    openapi_extra=json_body(PublishIn),
)
async def publish(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    who: Annotated[Identity, Depends(caller)],
) -> Response:
    body = await parse_json_body(request, PublishIn)
    validate_channel(body.channel)  # a malformed name is invalid_channel, not forbidden
    svc.gate.check_publish(who, body.channel)
    result = await svc.hub.publish(
        body.channel, body.data, attrs=body.attrs, idempotency_key=body.idempotency_key
    )
    m = result.message
    return JsonResponse({"channel": m.channel, "epoch": m.epoch, "offset": m.offset,
                         "duplicate": result.duplicate})
