"""The client's sans-I/O protocol: fed frames and times by hand, checked action by action."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import pytest

from wagerwire.client.actions import (
    Action,
    BackfillNeeded,
    Deliver,
    Fail,
    GapDetected,
    Reconnect,
    SendFrame,
    StateChanged,
)
from wagerwire.client.backoff import Backoff
from wagerwire.client.errors import (
    AuthError,
    BadResumeTokenError,
    ForbiddenError,
    InvalidChannelError,
    ProtocolError,
    RateLimitedError,
    RequestError,
    SdkError,
    ServerFailureError,
    TransportError,
    error_for_close,
    error_for_code,
    error_for_status,
)
from wagerwire.client.messages import ClientMessage
from wagerwire.client.protocol import ClientProtocol, Counters
from wagerwire.client.states import (
    Closed,
    Connected,
    Connecting,
    Disconnected,
    IllegalTransition,
    Recovering,
)
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token, encode_positions
from wagerwire.types import Json

# -- helpers -----------------------------------------------------------------------------------

T = TypeVar("T")


def make(channels: Sequence[str] = ("game:crash",), **kwargs: object) -> ClientProtocol:
    kwargs.setdefault("rand", random.Random(7).random)
    return ClientProtocol(channels, **kwargs)  # type: ignore[arg-type]


def msg(channel: str, offset: int, epoch: str = "e1", data: Json = None) -> dict[str, Json]:
    return {
        "op": "message",
        "channel": channel,
        "offset": offset,
        "epoch": epoch,
        "ts": 1_700_000_000_000 + offset,
        "data": {"n": offset} if data is None else data,
        "token": "ignored",
    }


def ack(
    channel: str, epoch: str = "e1", offset: int = 0, recovered: bool = True
) -> dict[str, Json]:
    return {
        "op": "subscribed",
        "channel": channel,
        "epoch": epoch,
        "offset": offset,
        "recovered": recovered,
    }


def pattern_ack(pattern: str, recovered: bool = True) -> dict[str, Json]:
    return {"op": "subscribed", "channel": pattern, "pattern": True, "recovered": recovered}


def page(*frames: dict[str, Json]) -> list[ClientMessage]:
    return [ClientMessage.from_json(f) for f in frames]


def delivered(actions: Sequence[Action]) -> list[tuple[str, int]]:
    return [(a.message.channel, a.message.offset) for a in actions if isinstance(a, Deliver)]


def states(actions: Sequence[Action]) -> list[str]:
    return [type(a.state).__name__ for a in actions if isinstance(a, StateChanged)]


def of_type(actions: Sequence[Action], cls: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, cls)]


def connect(proto: ClientProtocol, now: float = 0.0, *acks: dict[str, Json]) -> list[Action]:
    """Start, open and acknowledge; returns every action produced."""
    out = proto.connect_started(now)
    out += proto.connection_opened(now)
    for a in acks:
        out += proto.frame_received(a, now)
    return out


def drop(proto: ClientProtocol, now: float, code: int | None = 1006) -> Reconnect:
    actions = proto.connection_lost(code, "", now)
    (reconnect,) = of_type(actions, Reconnect)
    return reconnect


# -- construction and subscribe frames ---------------------------------------------------------


def test_subscribe_frame_without_and_with_positions() -> None:
    proto = make(["game:crash", "odds:football:*"], filter={"bookmaker": ["bet365"]})
    actions = connect(proto)
    assert states(actions) == ["Connecting"]
    (send,) = of_type(actions, SendFrame)
    assert send.frame == {
        "op": "subscribe",
        "channels": ["game:crash", "odds:football:*"],
        "filter": {"bookmaker": ["bet365"]},
    }
    proto.frame_received(ack("game:crash", "e1", 4), 0)
    actions = proto.frame_received(pattern_ack("odds:football:*"), 0)
    assert states(actions) == ["Connected"]
    proto.frame_received(msg("odds:football:epl", 9), 1)
    token = proto.resume_token
    assert token is not None
    assert decode_token(token) == {
        "game:crash": Position("e1", 4),
        "odds:football:epl": Position("e1", 9),
    }
    drop(proto, 2)
    proto.connect_started(5)
    (send,) = of_type(proto.connection_opened(5), SendFrame)
    assert send.frame["since"] == token


def test_since_seeds_positions_and_bad_tokens_fail_early() -> None:
    token = encode_positions({"game:crash": Position("e1", 10)})
    proto = make(since=token)
    assert proto.positions == {"game:crash": Position("e1", 10)}
    with pytest.raises(BadResumeTokenError):
        make(since="!!!not a token")


@pytest.mark.parametrize("channels", [[], ["Game:Crash"], ["a b"], "game:crash"])
def test_invalid_channels_are_refused_locally(channels: list[str]) -> None:
    with pytest.raises(InvalidChannelError):
        make(channels)


def test_sse_wire_subscribes_through_the_url() -> None:
    proto = make(["game:crash"], wire="sse", filter={"game": "crash"})
    assert of_type(connect(proto), SendFrame) == []
    assert proto.subscribe_params() == (["game:crash"], {"game": "crash"}, None)


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_to_the_cap() -> None:
    b = Backoff()
    assert [b.ceiling(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30
    assert b.delay(3, 0.5) == 4.0
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)


def test_reconnect_delays_stay_within_full_jitter_bounds() -> None:
    proto = make()
    now = 0.0
    delays = []
    for attempt in range(8):
        proto.connect_started(now)
        actions = proto.connection_failed(TransportError("refused"), now)
        (reconnect,) = of_type(actions, Reconnect)
        (state,) = [a.state for a in actions if isinstance(a, StateChanged)]
        assert isinstance(state, Disconnected) and state.next_retry_at == reconnect.at
        assert proto.next_deadline() == reconnect.at
        delay = reconnect.at - now
        assert 0 <= delay <= min(30.0, 2.0**attempt)
        delays.append(delay)
        now = reconnect.at
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    assert proto.counters.reconnects == 7


def test_jitter_is_reproducible_with_a_seeded_source() -> None:
    def run(seed: int) -> list[float]:
        proto = make(rand=random.Random(seed).random)
        out = []
        for _ in range(5):
            proto.connect_started(0)
            (r,) = of_type(proto.connection_failed(TransportError("x"), 0), Reconnect)
            out.append(r.at)
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_full_jitter_spreads_over_the_whole_window() -> None:
    proto = make(rand=random.Random(3).random, backoff=Backoff(initial=8, maximum=8))
    samples = []
    for _ in range(400):
        proto.connect_started(0)
        (r,) = of_type(proto.connection_failed(TransportError("x"), 0), Reconnect)
        samples.append(r.at)
    assert min(samples) < 0.5 and max(samples) > 7.5
    assert 3.0 < sum(samples) / len(samples) < 5.0


def test_backoff_resets_after_a_successful_subscription() -> None:
    proto = make(rand=lambda: 1.0 - 1e-9)  # always the top of the window
    for _ in range(4):
        proto.connect_started(0)
        proto.connection_failed(TransportError("x"), 0)
    assert isinstance(proto.state, Disconnected)
    assert proto.state.next_retry_at == pytest.approx(8.0)
    actions = connect(proto, 10, ack("game:crash"))
    assert states(actions) == ["Connecting", "Connected"]
    r = drop(proto, 20)
    assert r.at == pytest.approx(21.0)  # back to the first step


def test_opening_alone_does_not_reset_the_backoff() -> None:
    proto = make(rand=lambda: 1.0 - 1e-9)
    for _ in range(3):
        proto.connect_started(0)
        proto.connection_opened(0)
        proto.connection_lost(4000, "slow", 0)  # dropped before the subscription was acked
    assert isinstance(proto.state, Disconnected)
    assert proto.state.next_retry_at == pytest.approx(4.0)


def test_retry_after_and_rate_limits_push_the_retry_out() -> None:
    proto = make(rand=lambda: 0.0)
    proto.connect_started(0)
    (r,) = of_type(
        proto.connection_failed(RateLimitedError("slow down", retry_after=42), 0), Reconnect
    )
    assert r.at == 42
    proto.connect_started(42)
    proto.connection_opened(42)
    r = drop(proto, 50, code=4029)
    assert r.at == 50 + 30  # rate limited without a hint: wait the longest backoff


# -- dedupe and recovery -----------------------------------------------------------------------


def test_duplicates_are_dropped_by_channel_and_offset() -> None:
    proto = make(["game:crash", "game:dice"])
    connect(proto, 0, ack("game:crash"), ack("game:dice"))
    out: list[Action] = []
    for frame in [
        msg("game:crash", 1),
        msg("game:crash", 2),
        msg("game:crash", 2),
        msg("game:dice", 1),
        msg("game:crash", 1),
        msg("game:crash", 3),
    ]:
        out += proto.frame_received(frame, 1)
    assert delivered(out) == [
        ("game:crash", 1),
        ("game:crash", 2),
        ("game:dice", 1),
        ("game:crash", 3),
    ]
    assert proto.counters.duplicates_dropped == 2
    assert proto.counters.messages_delivered == 4
    (first,) = [a.message for a in of_type(out, Deliver)][:1]
    assert first == ClientMessage("game:crash", 1, "e1", 1_700_000_000_001, {"n": 1}, "live")


def test_fresh_subscription_starts_live_at_the_acked_offset() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash", "e1", 50))
    assert proto.positions == {"game:crash": Position("e1", 50)}
    assert delivered(proto.frame_received(msg("game:crash", 50), 1)) == []
    assert delivered(proto.frame_received(msg("game:crash", 51), 1)) == [("game:crash", 51)]


def test_resume_replays_then_goes_live_without_duplicates() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash", "e1", 3))
    proto.frame_received(msg("game:crash", 4), 1)
    drop(proto, 2)
    actions = connect(proto, 3, ack("game:crash", "e1", 7, recovered=True))
    assert states(actions) == ["Connecting", "Recovering"]
    (send,) = of_type(actions, SendFrame)
    assert decode_token(str(send.frame["since"])) == {"game:crash": Position("e1", 4)}
    out: list[Action] = []
    for n in (4, 5, 6, 7, 8):  # 4 overlaps what we had
        out += proto.frame_received(msg("game:crash", n), 4)
    assert delivered(out) == [("game:crash", n) for n in (5, 6, 7, 8)]
    assert [a.message.source for a in of_type(out, Deliver)] == [
        "replay",
        "replay",
        "replay",
        "live",
    ]
    assert states(out) == ["Connected"]
    assert proto.counters.messages_recovered == 3
    assert proto.counters.duplicates_dropped == 1
    assert proto.counters.reconnects == 1


def test_recovered_false_asks_for_a_backfill_and_holds_live_messages() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    actions = connect(proto, 0, ack("game:crash", "e1", 20, recovered=False))
    (need,) = of_type(actions, BackfillNeeded)
    assert (need.channel, need.epoch, need.after_offset, need.until_offset) == (
        "game:crash",
        "e1",
        10,
        20,
    )
    assert states(actions) == ["Connecting", "Recovering"]
    assert proto.backfill_active(need.request_id)
    # Live messages arriving while the backfill runs are held, not delivered out of order.
    assert delivered(proto.frame_received(msg("game:crash", 21), 1)) == []
    page1 = page(*[msg("game:crash", n) for n in range(11, 16)])
    page2 = page(*[msg("game:crash", n) for n in range(16, 23)])  # runs past until: cut at 20
    out = proto.backfill_page(need.request_id, "e1", page1, 2)
    out += proto.backfill_page(need.request_id, "e1", page2, 2)
    assert delivered(out) == [("game:crash", n) for n in range(11, 21)]
    assert all(a.message.source == "backfill" for a in of_type(out, Deliver))
    out = proto.backfill_done(need.request_id, 3)
    assert delivered(out) == [("game:crash", 21)]
    assert states(out) == ["Connected"]
    assert not proto.backfill_active(need.request_id)
    assert proto.counters.gaps_backfilled == 1
    assert proto.counters.messages_recovered == 10
    assert proto.counters.gaps_unrecovered == 0


def test_epoch_change_on_resume_backfills_the_new_epoch_from_the_start() -> None:
    proto = make(since=encode_positions({"game:crash": Position("old", 99)}))
    actions = connect(proto, 0, ack("game:crash", "new", 3, recovered=False))
    (need,) = of_type(actions, BackfillNeeded)
    assert (need.epoch, need.after_offset, need.until_offset) == ("new", 0, 3)
    out = proto.backfill_page(
        need.request_id, "new", page(*[msg("game:crash", n, "new") for n in (1, 2, 3)]), 1
    )
    out += proto.backfill_done(need.request_id, 1)
    assert delivered(out) == [("game:crash", 1), ("game:crash", 2), ("game:crash", 3)]
    assert proto.positions["game:crash"] == Position("new", 3)


def test_epoch_change_even_if_the_server_says_recovered() -> None:
    proto = make(since=encode_positions({"game:crash": Position("old", 5)}))
    actions = connect(proto, 0, ack("game:crash", "new", 2, recovered=True))
    assert len(of_type(actions, BackfillNeeded)) == 1


def test_epoch_change_mid_stream_backfills_what_came_before() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash", "e1", 0))
    proto.frame_received(msg("game:crash", 1), 1)
    out = proto.frame_received(msg("game:crash", 4, "e2"), 2)
    (need,) = of_type(out, BackfillNeeded)
    assert (need.epoch, need.after_offset, need.until_offset) == ("e2", 0, 3)
    assert delivered(out) == []
    assert states(out) == ["Recovering"]
    out = proto.backfill_page(
        need.request_id, "e2", page(*[msg("game:crash", n, "e2") for n in (1, 2, 3)]), 3
    )
    out += proto.backfill_done(need.request_id, 3)
    assert delivered(out) == [("game:crash", n) for n in (1, 2, 3, 4)]
    # A new epoch that starts at offset 1 needs nothing.
    assert delivered(proto.frame_received(msg("game:crash", 1, "e3"), 4)) == [("game:crash", 1)]


def test_pattern_not_recovered_backfills_every_known_matching_channel() -> None:
    token = encode_positions(
        {"odds:football:epl": Position("e1", 5), "odds:tennis:atp": Position("e1", 2)}
    )
    proto = make(["odds:football:*"], since=token)
    actions = connect(proto, 0, pattern_ack("odds:football:*", recovered=False))
    (need,) = of_type(actions, BackfillNeeded)
    assert (need.channel, need.after_offset, need.until_offset) == ("odds:football:epl", 5, None)


def test_backfill_reports_pruned_history_as_a_gap() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    (need,) = of_type(
        connect(proto, 0, ack("game:crash", "e1", 30, recovered=False)), BackfillNeeded
    )
    out = proto.backfill_page(
        need.request_id, "e1", page(*[msg("game:crash", n) for n in range(25, 31)]), 1
    )
    (gap,) = of_type(out, GapDetected)
    assert (gap.after_offset, gap.before_offset) == (10, 25)
    assert delivered(out)[0] == ("game:crash", 25)
    proto.backfill_done(need.request_id, 1)
    assert proto.counters.gaps_unrecovered == 1


def test_failed_backfill_reports_a_gap_and_releases_held_messages() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    (need,) = of_type(
        connect(proto, 0, ack("game:crash", "e1", 20, recovered=False)), BackfillNeeded
    )
    proto.frame_received(msg("game:crash", 21), 1)
    out = proto.backfill_done(need.request_id, 2, error=ServerFailureError("503"))
    (gap,) = of_type(out, GapDetected)
    assert (gap.channel, gap.after_offset, gap.before_offset) == ("game:crash", 10, 21)
    assert delivered(out) == [("game:crash", 21)]
    assert proto.counters.gaps_unrecovered == 1 and proto.counters.gaps_backfilled == 0


def test_backfill_disabled_reports_the_gap_and_moves_on() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}), backfill=False)
    actions = connect(proto, 0, ack("game:crash", "e1", 20, recovered=False))
    assert of_type(actions, BackfillNeeded) == []
    (gap,) = of_type(actions, GapDetected)
    assert (gap.after_offset, gap.before_offset) == (10, 21)
    assert states(actions)[-1] == "Connected"
    assert delivered(proto.frame_received(msg("game:crash", 21), 1)) == [("game:crash", 21)]


def test_backfill_survives_a_reconnect_and_a_superseded_request_is_ignored() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    (need,) = of_type(
        connect(proto, 0, ack("game:crash", "e1", 20, recovered=False)), BackfillNeeded
    )
    drop(proto, 1)
    actions = connect(proto, 5, ack("game:crash", "e1", 25, recovered=False))
    assert of_type(actions, BackfillNeeded) == []  # the running one is extended instead
    out = proto.backfill_page(
        need.request_id, "e1", page(*[msg("game:crash", n) for n in range(11, 26)]), 6
    )
    assert delivered(out)[-1] == ("game:crash", 25)
    # The epoch moved under the backfill: it restarts with a new id and the old one stops.
    proto2 = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    (need2,) = of_type(
        connect(proto2, 0, ack("game:crash", "e1", 20, recovered=False)), BackfillNeeded
    )
    (again,) = of_type(
        proto2.backfill_page(need2.request_id, "e2", page(*[msg("game:crash", 1, "e2")]), 1),
        BackfillNeeded,
    )
    assert again.request_id != need2.request_id and (again.epoch, again.after_offset) == ("e2", 0)
    assert not proto2.backfill_active(need2.request_id)
    assert proto2.backfill_page(need2.request_id, "e1", page(*[msg("game:crash", 11)]), 1) == []
    assert proto2.backfill_done(need2.request_id, 1) == []


def test_messages_for_unsubscribed_channels_are_dropped() -> None:
    proto = make(["game:crash", "game:dice"])
    connect(proto, 0, ack("game:crash"), ack("game:dice"))
    (send,) = of_type(proto.unsubscribe(["game:dice"], 1), SendFrame)
    assert send.frame == {"op": "unsubscribe", "channels": ["game:dice"]}
    assert delivered(proto.frame_received(msg("game:dice", 1), 2)) == []
    assert "game:dice" not in proto.positions
    assert proto.channels == ("game:crash",)


# -- heartbeat watchdog ------------------------------------------------------------------------


def test_idle_websocket_pings_then_the_watchdog_reconnects() -> None:
    proto = make(heartbeat_interval=10)
    connect(proto, 0, ack("game:crash"))
    assert proto.next_deadline() == 10
    assert proto.tick(5) == []
    (ping,) = of_type(proto.tick(10), SendFrame)
    assert ping.frame == {"op": "ping"}
    assert proto.tick(15) == []  # one ping per idle interval
    assert proto.next_deadline() == 20
    actions = proto.tick(20)
    (r,) = of_type(actions, Reconnect)
    assert isinstance(r.reason, TransportError) and "heartbeat" in r.reason.message
    assert states(actions) == ["Disconnected"]
    # Whatever the dying socket still delivers or says is ignored now.
    assert proto.frame_received(msg("game:crash", 1), 21) == []
    assert proto.connection_lost(1006, "", 21) == []


def test_any_frame_or_activity_keeps_the_link_alive() -> None:
    proto = make(heartbeat_interval=10)
    connect(proto, 0, ack("game:crash"))
    proto.tick(10)
    proto.frame_received({"op": "pong"}, 12)
    assert proto.tick(21) == []
    assert of_type(proto.tick(25), Reconnect) == []  # idle 13 s: a ping, not a reconnect
    proto.activity(30)
    assert proto.next_deadline() == 40
    assert of_type(proto.tick(31), Reconnect) == []


def test_sse_watchdog_does_not_ping() -> None:
    proto = make(wire="sse", heartbeat_interval=15)
    connect(proto, 0, ack("game:crash"))
    assert proto.next_deadline() == 30
    assert proto.tick(16) == []
    proto.activity(20)  # a comment heartbeat
    assert of_type(proto.tick(49), Reconnect) == []
    assert len(of_type(proto.tick(50), Reconnect)) == 1


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (1001, ServerFailureError),
        (4000, TransportError),
        (4002, TransportError),
        (4029, RateLimitedError),
        (1011, ServerFailureError),
        (1009, TransportError),
        (1000, TransportError),
        (None, TransportError),
        (4999, TransportError),
    ],
)
def test_retryable_close_codes_reconnect(code: int | None, kind: type[SdkError]) -> None:
    proto = make()
    connect(proto, 0, ack("game:crash"))
    r = drop(proto, 1, code)
    assert type(r.reason) is kind and r.reason.retryable and r.reason.close_code == code
    assert isinstance(proto.state, Disconnected)


@pytest.mark.parametrize(
    ("code", "kind"),
    [(4001, AuthError), (4003, ForbiddenError), (1008, ProtocolError), (1002, ProtocolError)],
)
def test_fatal_close_codes_fail(code: int, kind: type[SdkError]) -> None:
    proto = make()
    connect(proto, 0, ack("game:crash"))
    actions = proto.connection_lost(code, "no", 1)
    (fail,) = of_type(actions, Fail)
    assert type(fail.error) is kind and not fail.error.retryable
    assert states(actions) == ["Closed"]
    assert isinstance(proto.state, Closed) and proto.state.error is fail.error
    assert proto.next_deadline() is None
    with pytest.raises(IllegalTransition):
        proto.connect_started(2)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("unauthorized", False),
        ("forbidden", False),
        ("invalid_channel", False),
        ("too_many_channels", False),
        ("bad_resume_token", False),
        ("rate_limited", True),
        ("unavailable", True),
        ("internal", True),
    ],
)
def test_error_frames(code: str, retryable: bool) -> None:
    proto = make()
    connect(proto)
    actions = proto.frame_received({"op": "error", "code": code, "message": "m"}, 1)
    assert bool(of_type(actions, Reconnect)) is retryable
    assert bool(of_type(actions, Fail)) is not retryable


def test_unauthorized_is_retried_once_when_auth_can_be_refreshed() -> None:
    proto = make(can_refresh_auth=True)
    connect(proto, 0, ack("game:crash"))
    r = drop(proto, 1, 4001)
    assert r.refresh_auth and isinstance(r.reason, AuthError)
    proto.connect_started(r.at)
    proto.connection_opened(r.at)
    (fail,) = of_type(proto.connection_lost(4001, "still no", r.at + 1), Fail)
    assert isinstance(fail.error, AuthError)


def test_error_mapping_tables() -> None:
    assert isinstance(error_for_status(401, "x"), AuthError)
    assert isinstance(error_for_status(403, "x"), ForbiddenError)
    assert isinstance(error_for_status(429, "x", retry_after=3), RateLimitedError)
    assert isinstance(error_for_status(502, "x"), ServerFailureError)
    assert isinstance(error_for_status(418, "x"), RequestError)
    assert isinstance(error_for_status(400, "x", code="invalid_channel"), InvalidChannelError)
    assert isinstance(error_for_code("whatever", "x"), RequestError)
    assert isinstance(error_for_code("whatever", "x", status=503), ServerFailureError)
    assert error_for_close(4003, "nope").message == "connection closed (4003): nope"


def test_malformed_frames_are_protocol_errors_but_unknown_ops_are_ignored() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash"))
    assert proto.frame_received({"op": "future-thing"}, 1) == []
    assert proto.frame_received({"op": "pong"}, 1) == []
    (fail,) = of_type(proto.frame_received({"op": "message", "channel": "game:crash"}, 1), Fail)
    assert isinstance(fail.error, ProtocolError)
    proto = make()
    connect(proto)
    assert isinstance(of_type(proto.text_received(b"{nope", 1), Fail)[0].error, ProtocolError)


def test_sse_data_without_an_op_is_a_message() -> None:
    proto = make(wire="sse")
    connect(proto, 0, ack("game:crash"))
    frame = msg("game:crash", 1)
    del frame["op"]
    assert delivered(proto.frame_received(frame, 1)) == [("game:crash", 1)]


# -- lifecycle ---------------------------------------------------------------------------------


def test_illegal_inputs_raise() -> None:
    proto = make()
    with pytest.raises(IllegalTransition):
        proto.connection_opened(0)
    proto.connect_started(0)
    with pytest.raises(IllegalTransition):
        proto.connect_started(0)
    assert isinstance(proto.state, Connecting)


def test_close_is_terminal_and_idempotent() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash"))
    assert isinstance(proto.state, Connected)
    assert states(proto.close(1)) == ["Closed"]
    assert proto.close(2) == []
    assert isinstance(proto.state, Closed) and proto.state.error is None
    assert proto.frame_received(msg("game:crash", 1), 3) == []
    assert proto.tick(100) == []


def test_recovering_is_left_even_when_a_filter_hides_the_replay_target() -> None:
    proto = make(
        filter={"game": "crash"}, since=encode_positions({"game:crash": Position("e1", 1)})
    )
    actions = connect(proto, 0, ack("game:crash", "e1", 9))
    assert states(actions)[-1] == "Connected"
    assert isinstance(proto.state, Connected) and not isinstance(proto.state, Recovering)


def test_counters_total() -> None:
    a = Counters(reconnects=1, duplicates_dropped=2)
    b = Counters(reconnects=3, gaps_backfilled=1)
    t = Counters.total([a, b])
    assert (t.reconnects, t.duplicates_dropped, t.gaps_backfilled) == (4, 2, 1)


def test_backfill_next_walks_pages_and_stops_at_the_target() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 10)}))
    (need,) = of_type(
        connect(proto, 0, ack("game:crash", "e1", 14, recovered=False)), BackfillNeeded
    )
    assert proto.backfill_next(need.request_id) == 10
    proto.backfill_page(
        need.request_id, "e1", page(msg("game:crash", 11), msg("game:crash", 12)), 1
    )
    assert proto.backfill_next(need.request_id) == 12
    proto.backfill_page(
        need.request_id, "e1", page(msg("game:crash", 13), msg("game:crash", 14)), 1
    )
    assert proto.backfill_next(need.request_id) is None
    assert proto.backfill_next(999) is None


def test_sans_io_modules_import_no_io() -> None:
    import ast
    from pathlib import Path

    import wagerwire.client

    root = Path(wagerwire.client.__file__).parent
    banned = {"asyncio", "socket", "time", "datetime", "threading", "websockets", "httpx"}
    for name in ("protocol", "states", "actions", "messages", "backoff", "errors"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in banned, f"{name}.py imports {mod}"


def test_empty_channel_has_no_epoch_and_is_fetched_from_zero_if_missed() -> None:
    proto = make(["game:crash", "game:dice"])
    connect(proto, 0, ack("game:crash", "", 0), ack("game:dice", "", 0))
    assert proto.positions == {} and proto.resume_token is None
    assert isinstance(proto.state, Connected)
    proto.frame_received(msg("game:dice", 1), 1)  # dice got a message live; crash did not
    drop(proto, 2)
    actions = connect(proto, 3, ack("game:crash", "e7", 2), ack("game:dice", "e1", 1))
    (need,) = of_type(actions, BackfillNeeded)
    assert (need.channel, need.epoch, need.after_offset, need.until_offset) == (
        "game:crash",
        "e7",
        0,
        2,
    )
    (send,) = of_type(actions, SendFrame)
    assert decode_token(str(send.frame["since"])) == {"game:dice": Position("e1", 1)}


def test_history_lost_on_the_server_side_then_new_epoch_from_one() -> None:
    proto = make(since=encode_positions({"game:crash": Position("e1", 5)}))
    actions = connect(proto, 0, ack("game:crash", "", 0, recovered=False))
    assert of_type(actions, BackfillNeeded) == [] and of_type(actions, Fail) == []
    out = proto.frame_received(msg("game:crash", 1, "e2"), 1)
    assert delivered(out) == [("game:crash", 1)]
    assert proto.positions["game:crash"] == Position("e2", 1)


# -- credentials and filters (issue 4) ----------------------------------------------------------


def test_a_refused_key_is_final_but_an_unreachable_token_service_is_retried() -> None:
    proto = make(can_refresh_auth=True)
    proto.connect_started(0)
    out = proto.auth_failed(TransportError("connection refused"), 0)
    (retry,) = of_type(out, Reconnect)
    assert not retry.refresh_auth and isinstance(proto.state, Disconnected)
    proto.connect_started(retry.at)
    out = proto.auth_failed(RateLimitedError("quota", retry_after=7.0), retry.at)
    (retry,) = of_type(out, Reconnect)
    assert retry.at >= 7.0
    proto.connect_started(retry.at)
    (fail,) = of_type(proto.auth_failed(AuthError("invalid API key"), retry.at), Fail)
    assert isinstance(fail.error, AuthError) and isinstance(proto.state, Closed)
    assert proto.auth_failed(AuthError("again"), retry.at + 1) == []  # already closed


def test_forbidden_channel_fails_at_once_even_when_auth_can_be_refreshed() -> None:
    proto = make(["game:slot"], can_refresh_auth=True)
    connect(proto)
    out = proto.frame_received({"op": "error", "code": "forbidden", "message": "plan"}, 1)
    (fail,) = of_type(out, Fail)
    assert isinstance(fail.error, ForbiddenError) and not of_type(out, Reconnect)


def test_backfill_applies_the_filter_when_the_history_carries_attrs() -> None:
    since = encode_positions({"odds:football:epl": Position("e1", 0)})
    proto = make(["odds:football:epl"], filter={"bookmaker": "pinnacle"}, since=since)
    (need,) = of_type(
        connect(proto, 0, ack("odds:football:epl", "e1", 4, recovered=False)), BackfillNeeded
    )
    books = ["pinnacle", "bet365", "pinnacle", "bet365"]
    frames = [
        {**msg("odds:football:epl", n + 1), "attrs": {"bookmaker": b}} for n, b in enumerate(books)
    ]
    out = proto.backfill_page(need.request_id, "e1", page(*frames), 1)
    assert delivered(out) == [("odds:football:epl", 1), ("odds:football:epl", 3)]
    assert proto.positions["odds:football:epl"] == Position("e1", 4)  # skipped ones count
    assert proto.backfill_next(need.request_id) is None


def test_backfill_without_attrs_filters_on_what_the_channel_name_implies() -> None:
    proto = make(["odds:*"], filter={"sport": "football", "bookmaker": "x"})
    proto._positions = {
        "odds:tennis:atp": Position("e1", 0),
        "odds:football:epl": Position("e1", 0),
    }
    out = connect(proto, 0, {**pattern_ack("odds:*", recovered=False)})
    needs = {n.channel: n for n in of_type(out, BackfillNeeded)}
    tennis = proto.backfill_page(
        needs["odds:tennis:atp"].request_id, "e1", page(msg("odds:tennis:atp", 1)), 1
    )
    football = proto.backfill_page(
        needs["odds:football:epl"].request_id, "e1", page(msg("odds:football:epl", 1)), 1
    )
    assert delivered(tennis) == []  # sport=tennis: decided by the name alone
    assert delivered(football) == [("odds:football:epl", 1)]  # bookmaker unknown: delivered


def test_an_invalid_filter_is_refused_locally() -> None:
    with pytest.raises(RequestError):
        make(filter={"bookmaker": {"nested": 1}})


def test_a_hole_in_an_unfiltered_live_stream_is_backfilled() -> None:
    proto = make()
    connect(proto, 0, ack("game:crash", "e1", 3))
    assert delivered(proto.frame_received(msg("game:crash", 4), 1)) == [("game:crash", 4)]
    out = proto.frame_received(msg("game:crash", 7), 2)  # 5 and 6 never came
    (need,) = of_type(out, BackfillNeeded)
    assert (need.after_offset, need.until_offset) == (4, 6) and delivered(out) == []
    assert proto.counters.live_gaps == 1
    out = proto.backfill_page(
        need.request_id, "e1", page(msg("game:crash", 5), msg("game:crash", 6)), 3
    )
    out += proto.backfill_done(need.request_id, 3)
    assert delivered(out) == [("game:crash", 5), ("game:crash", 6), ("game:crash", 7)]


def test_holes_are_expected_on_a_filtered_stream() -> None:
    proto = make(filter={"bookmaker": "x"})
    connect(proto, 0, ack("game:crash", "e1", 3))
    out = proto.frame_received(msg("game:crash", 4), 1) + proto.frame_received(
        msg("game:crash", 9), 2
    )
    assert delivered(out) == [("game:crash", 4), ("game:crash", 9)]
    assert not of_type(out, BackfillNeeded) and proto.counters.live_gaps == 0


# -- WebTransport: the WebSocket ops on a stream, and the datagram lane ------------------------


def test_wt_wire_sends_ops_and_pings_like_websocket() -> None:
    proto = make(wire="wt", heartbeat_interval=10.0)
    (send,) = of_type(connect(proto, 0.0, ack("game:crash", "e1", 0)), SendFrame)
    assert send.frame == {"op": "subscribe", "channels": ["game:crash"]}
    assert of_type(proto.tick(10.0), SendFrame)[0].frame == {"op": "ping"}
    assert isinstance(of_type(proto.tick(20.0), Reconnect)[0].reason, TransportError)


def lane_datagram(channel: str, offset: int, epoch: str = "e1") -> bytes:
    import orjson

    return orjson.dumps(msg(channel, offset, epoch))


def test_datagram_lane_subscribes_live_and_counts_what_it_skips() -> None:
    from wagerwire.client.actions import Superseded

    proto = make(["odds:soccer:*"], wire="wt", lane="datagram")
    (send,) = of_type(connect(proto), SendFrame)
    assert send.frame == {"op": "subscribe", "channels": ["odds:soccer:*"], "lane": "datagram"}
    # a datagram may overtake the subscribed line on the stream: delivered all the same
    assert delivered(proto.datagram_received(lane_datagram("odds:soccer:epl", 3), 1)) == [
        ("odds:soccer:epl", 3)]
    assert states(proto.frame_received(
        {**pattern_ack("odds:soccer:*"), "lane": "datagram"}, 1)) == ["Connected"]
    actions = proto.datagram_received(lane_datagram("odds:soccer:epl", 7), 2)
    assert delivered(actions) == [("odds:soccer:epl", 7)]
    assert of_type(actions, Superseded) == [Superseded("odds:soccer:epl", "e1", 3, 7)]
    assert not of_type(actions, BackfillNeeded) and not of_type(actions, GapDetected)
    assert proto.datagram_received(lane_datagram("odds:soccer:epl", 5), 3) == []  # stale
    assert proto.datagram_received(b"not json", 3) == []
    assert proto.datagram_received(lane_datagram("odds:tennis:atp", 1), 3) == []  # not ours
    c = proto.counters
    assert (c.messages_delivered, c.datagrams_superseded, c.datagrams_stale) == (2, 3, 1)
    # after a drop the lane subscribes again without since; the next datagram shows the hole
    drop(proto, 4)
    proto.connect_started(5)
    (again,) = of_type(proto.connection_opened(5), SendFrame)
    assert "since" not in again.frame and again.frame["lane"] == "datagram"
    assert of_type(proto.datagram_received(lane_datagram("odds:soccer:epl", 9), 6),
                   Superseded) == [Superseded("odds:soccer:epl", "e1", 7, 9)]
    # a new epoch starts over: no hole reported across epochs
    actions = proto.datagram_received(lane_datagram("odds:soccer:epl", 4, "e2"), 7)
    assert delivered(actions) == [("odds:soccer:epl", 4)] and not of_type(actions, Superseded)
    # unsubscribe goes to the lane
    (unsub,) = of_type(proto.unsubscribe(["odds:soccer:*"], 8), SendFrame)
    assert unsub.frame == {"op": "unsubscribe", "channels": ["odds:soccer:*"], "lane": "datagram"}


def test_datagram_lane_rules_are_checked_before_connecting() -> None:
    with pytest.raises(RequestError, match="WebTransport"):
        make(["odds:x"], wire="ws", lane="datagram")
    with pytest.raises(RequestError, match="odds"):
        make(["game:crash"], wire="wt", lane="datagram")
    with pytest.raises(RequestError, match="since"):
        make(["odds:x"], wire="wt", lane="datagram",
             since=encode_positions({"odds:x": Position("e1", 3)}))
    with pytest.raises(ValueError):
        make(["odds:x"], wire="wt", lane="sideways")
    stream = make(["odds:x"], wire="wt")
    assert stream.datagram_received(lane_datagram("odds:x", 1), 0) == []  # not on the lane
