"""Properties of the text parsers (tokens, channel names, filters, native ops, dialect frames).

Each parser either answers or raises its documented error, for any input hypothesis can
build; tokens concatenate; a remembered parse equals a fresh one.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from serverproc import ROOT
from wagerwire.core.channels import Filter, validate_channel, validate_pattern
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token, encode_position, encode_positions
from wagerwire.dialects import datastream, native, stake, trackersino
from wagerwire.dialects.catalog import Catalog, CatalogGame
from wagerwire.errors import (
    BadParameter,
    BadResumeToken,
    InvalidChannel,
    MalformedJson,
    NotFound,
    UnknownOp,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import fuzz_client  # noqa: E402

FAST = settings(max_examples=100, deadline=1000)

channels = st.builds(str.__add__, st.sampled_from("ag09"), st.text("abgz09:_.-", max_size=24))
epochs = st.text("abz019", min_size=1, max_size=8)
positions = st.builds(Position, epochs, st.integers(0, 2**63))
states = st.dictionaries(channels, positions, min_size=1, max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
anything = st.one_of(json_values, st.binary(max_size=20), st.tuples(st.integers()))


# --------------------------------------------------------------------------- resume tokens


def merged(first: dict[str, Position], second: dict[str, Position]) -> dict[str, Position]:
    """The documented rule for a channel named twice: same epoch keeps the furthest offset,
    another epoch replaces the earlier segment."""
    out = dict(first)
    for channel, pos in second.items():
        old = out.get(channel)
        if old is None or old.epoch != pos.epoch or pos.offset > old.offset:
            out[channel] = pos
    return out


@FAST
@given(first=states, second=states)
def test_joined_tokens_decode_to_the_merged_positions(
    first: dict[str, Position], second: dict[str, Position]
) -> None:
    token = encode_positions(first) + "." + encode_positions(second)
    assert decode_token(token) == merged(first, second)


@FAST
@given(st.one_of(
    st.text(max_size=120),
    st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
                     max_size=40), min_size=1, max_size=4).map(".".join),
    st.tuples(st.text(max_size=20), st.text(max_size=10), st.text(max_size=10)).map(
        lambda t: encode_position(*t[:2], 0).rstrip("A") + t[2]),
))
def test_decoded_tokens_are_fixed_points(token: str) -> None:
    try:
        positions = decode_token(token)
    except BadResumeToken:
        return
    assert decode_token(encode_positions(positions)) == positions


# --------------------------------------------------------------------------- channels, filters


@FAST
@given(st.one_of(st.text(max_size=220), anything, channels.map(lambda c: c + "\n"),
                 channels.map(lambda c: c.upper())))
def test_channel_validation_raises_only_invalid_channel(name: Any) -> None:
    for check, rule in ((validate_channel, r"[a-z0-9][a-z0-9:_.\-]{0,199}"),
                        (validate_pattern, r"[a-z0-9*][a-z0-9:_.\-*]{0,199}")):
        ok = isinstance(name, str) and re.fullmatch(rule, name) is not None
        try:
            assert check(name) == name and ok
        except InvalidChannel:
            assert not ok


@FAST
@given(json_values)
def test_filter_parse_raises_only_bad_parameter_and_interns(raw: Any) -> None:
    try:
        flt = Filter.parse(raw)
    except BadParameter:
        return
    assert flt is Filter.parse(orjson.loads(orjson.dumps(raw)))
    if flt is not None:
        flt.matches("game:crash", {"k": "v"})


# --------------------------------------------------------------------------- native ops

ops = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping", "publish", "nope"])},
    optional={"channels": st.one_of(st.lists(channels | json_values, max_size=4), json_values),
              "filter": json_values,
              "since": st.one_of(states.map(encode_positions), json_values),
              "channel": json_values, "data": json_values, "attrs": json_values,
              "idempotency_key": json_values},
)
NATIVE_ERRORS = (MalformedJson, UnknownOp, BadParameter, BadResumeToken)


@FAST
@given(st.one_of(ops.map(orjson.dumps), json_values.map(orjson.dumps), st.binary(max_size=80)),
       st.booleans())
def test_parse_op_raises_only_documented_errors_and_remembers_faithfully(
    frame: bytes, as_text: bool
) -> None:
    text: str | bytes = frame.decode("utf-8", "replace") if as_text else frame
    try:
        first = native.parse_op(text)
    except NATIVE_ERRORS:
        return
    second = native.parse_op(text)  # a subscribe frame may now come from the memo
    assert first == second
    if isinstance(first, native.Subscribe):
        assert first.channels is not second.channels  # callers may not share the list


# --------------------------------------------------------------------------- dialects

CATALOG = Catalog([
    CatalogGame("crash", "crash", "multiplier", "hypetech"),
    CatalogGame("stake-crash", "crash", "multiplier", "stake"),
    CatalogGame("double", "double", "color", "hypetech"),
])


@FAST
@given(st.one_of(
    st.fixed_dictionaries({"type": json_values | st.sampled_from(["subscribe", "unsubscribe"])},
                          optional={"channel": json_values | channels}).map(orjson.dumps),
    st.binary(max_size=60),
))
def test_stake_frames_parse_or_raise_documented_errors(frame: bytes) -> None:
    try:
        op = stake.parse_message(frame)
    except (MalformedJson, UnknownOp) as exc:
        assert orjson.loads(stake.encode_error(exc))["type"] == "error"
        return
    assert isinstance(op, stake.Subscribe | stake.Unsubscribe) and op.channel


@FAST
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(
    ["crash", "stake-crash", "double", " ", "", "x"]), max_size=60).map(",".join)))
def test_trackersino_games_parse_or_raise_documented_errors(raw: str) -> None:
    try:
        games = trackersino.parse_games(raw, CATALOG)
    except (BadParameter, NotFound):
        return
    assert games is None or all(g.game_type == "crash" for g in games)


@FAST
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"game_slug": json_values | st.just("crash"), "index": json_values | st.integers(0, 99)},
    optional={"result": json_values, "raw": json_values, "finished_at": json_values,
              "extras": json_values, "category": json_values},
)).map(orjson.dumps))
def test_dialect_round_encoders_take_any_published_data(data: bytes) -> None:
    for frame in (datastream.encode_round(data, 0), trackersino.encode_round(data)):
        assert frame == b"" or isinstance(orjson.loads(frame), dict)


# --------------------------------------------------------------------------- client SDK

server_frames = st.one_of(
    st.sampled_from([b"!", b"~", b"#"]),
    st.fixed_dictionaries({
        "op": st.sampled_from(["message", "subscribed", "error", "pong", None]),
        "channel": st.sampled_from(["game:crash", "odds:a:b", "odds:*", "x"]),
        "epoch": st.sampled_from(["e1", "e2"]),
        "offset": st.integers(-1, 6),
    }, optional={"recovered": st.booleans(), "pattern": st.booleans(), "ts": st.integers(0, 9),
                 "data": json_values, "code": st.sampled_from(["rate_limited", "internal"]),
                 "message": st.text(max_size=5)}).map(orjson.dumps),
    json_values.map(orjson.dumps),
)


@FAST
@given(st.lists(server_frames, max_size=25))
def test_client_protocol_takes_any_server_frames(frames: list[bytes]) -> None:
    """Any server, broken or hostile: the SDK answers with actions and, within an epoch,
    never delivers a message twice or out of order (the invariant lives in the fuzz target)."""
    fuzz_client(b"\n".join(frames))
