"""The SDK's protocol on conflating channels: superseded offsets are no gap, an image sets the
starting point without a backfill, a per-key interval is not checked for holes."""

from __future__ import annotations

import random

from wagerwire.client.actions import Action, BackfillNeeded, Deliver, GapDetected
from wagerwire.client.protocol import ClientProtocol
from wagerwire.core.tokens import encode_position
from wagerwire.types import Json

CH = "odds:f:l"


def msg(offset: int, **extra: Json) -> dict[str, Json]:
    return {"op": "message", "channel": CH, "offset": offset, "epoch": "e", "ts": offset,
            "data": {}, "token": "t", **extra}


def opened(proto: ClientProtocol, **ack: Json) -> None:
    proto.connect_started(0.0)
    proto.connection_opened(0.0)
    proto.frame_received({"op": "subscribed", "channel": CH, "epoch": "e", "offset": 0,
                          "recovered": True, **ack}, 0.0)


def make(**kwargs: object) -> ClientProtocol:
    return ClientProtocol([CH], rand=random.Random(1).random, **kwargs)  # type: ignore[arg-type]


def holes(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, GapDetected | BackfillNeeded)]


def test_superseded_offsets_are_not_a_gap() -> None:
    proto = make()
    opened(proto)
    out = proto.frame_received(msg(1), 1.0)
    out += proto.frame_received({"op": "superseded", "channel": CH, "epoch": "e",
                                 "offsets": [[2, 4], [6, 6]]}, 1.0)
    out += proto.frame_received(msg(5), 1.0)
    out += proto.frame_received(msg(7), 1.0)
    assert not holes(out)
    assert [a.message.offset for a in out if isinstance(a, Deliver)] == [1, 5, 7]
    assert proto.counters.messages_superseded == 4 and proto.counters.live_gaps == 0
    # an offset nobody said was superseded is still a gap
    out = proto.frame_received(msg(9), 1.0)
    assert holes(out) and proto.counters.live_gaps == 1


def test_image_sets_the_start_without_backfill() -> None:
    proto = make(since=encode_position(CH, "old", 3), image=True)
    proto.connect_started(0.0)
    (frame,) = [a for a in proto.connection_opened(0.0) if hasattr(a, "frame")]
    assert frame.frame["image"] is True  # type: ignore[attr-defined]
    out = proto.frame_received({"op": "subscribed", "channel": CH, "epoch": "e", "offset": 50,
                                "recovered": False, "image": True}, 0.0)
    out += proto.frame_received(msg(12, image=True), 0.0)
    out += proto.frame_received(msg(40, image=True), 0.0)
    out += proto.frame_received(msg(51), 0.0)
    assert not holes(out)
    delivered = [a.message for a in out if isinstance(a, Deliver)]
    assert [(m.offset, m.source) for m in delivered] == [(12, "image"), (40, "image"),
                                                        (51, "live")]
    assert proto.counters.images_delivered == 2


def test_a_per_key_interval_skips_offsets_by_design() -> None:
    proto = make(conflate_ms=500)
    proto.connect_started(0.0)
    sends = [a for a in proto.connection_opened(0.0) if hasattr(a, "frame")]
    assert sends[0].frame["conflate_ms"] == 500  # type: ignore[attr-defined]
    proto.frame_received({"op": "subscribed", "channel": CH, "epoch": "e", "offset": 0,
                          "recovered": True, "conflate_ms": 500}, 0.0)
    out = proto.frame_received(msg(1), 1.0) + proto.frame_received(msg(9), 1.0)
    assert not holes(out) and proto.counters.live_gaps == 0
