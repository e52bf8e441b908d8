"""Resume tokens, channel names and patterns, filters, and the native protocol's ops."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.core.channels import (
    MAX_CHANNEL_LENGTH,
    Filter,
    channel_attributes,
    is_pattern,
    is_private,
    pattern_matcher,
    validate_channel,
    validate_pattern,
)
from wagerwire.core.hub import SubscribeReply
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.core.tokens import (
    MAX_TOKEN_LENGTH,
    decode_token,
    encode_position,
    encode_positions,
)
from wagerwire.dialects import native
from wagerwire.errors import (
    BadParameter,
    BadResumeToken,
    ClientError,
    InvalidChannel,
    MalformedJson,
    UnknownOp,
)

channels = st.from_regex(r"[a-z0-9][a-z0-9:_.\-]{0,199}", fullmatch=True)
epochs = st.from_regex(r"[a-z0-9]{1,32}", fullmatch=True)
offsets = st.integers(min_value=0, max_value=2**63)
positions = st.builds(Position, epochs, offsets)
URL_SAFE = re.compile(r"[A-Za-z0-9_\-]+")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- tokens


@given(channels, epochs, offsets)
def test_single_channel_token_round_trips(channel: str, epoch: str, offset: int) -> None:
    token = encode_position(channel, epoch, offset)
    assert URL_SAFE.fullmatch(token), token  # fits a URL, a header and an SSE id: line
    assert decode_token(token) == {channel: Position(epoch, offset)}


@given(st.dictionaries(channels, positions, max_size=20))
def test_multi_channel_token_round_trips(state: dict[str, Position]) -> None:
    token = encode_positions(state)
    if not state:
        assert token == ""
        return
    assert decode_token(token) == state
    assert all(URL_SAFE.fullmatch(seg) for seg in token.split("."))
    assert encode_positions(dict(reversed(list(state.items())))) == token  # order-free


@given(st.dictionaries(channels, positions, min_size=1, max_size=10), st.randoms())
def test_joined_segments_in_any_order_are_one_token(
    state: dict[str, Position], rnd: Any
) -> None:
    """What a WebSocket client does: keep each channel's latest token and join with '.'."""
    segments = [encode_position(ch, p.epoch, p.offset) for ch, p in state.items()]
    rnd.shuffle(segments)
    assert decode_token(".".join(segments)) == state


@given(channels, epochs, offsets, offsets)
def test_repeated_channel_in_one_epoch_keeps_the_furthest(
    channel: str, epoch: str, a: int, b: int
) -> None:
    first, second = encode_position(channel, epoch, a), encode_position(channel, epoch, b)
    want = {channel: Position(epoch, max(a, b))}
    assert decode_token(f"{first}.{second}") == want
    assert decode_token(f"{second}.{first}") == want


def test_multi_token_joins_with_single_tokens() -> None:
    ab = encode_positions({"game:a": Position("e1", 3), "game:b": Position("e1", 9)})
    c = encode_position("odds:x:y", "e2", 0)
    assert decode_token(f"{ab}.{c}") == {
        "game:a": Position("e1", 3), "game:b": Position("e1", 9), "odds:x:y": Position("e2", 0),
    }


BAD_TOKENS: list[Any] = [
    "",
    None,
    5,
    b"bytes",
    "!!!",
    "a",  # one base64 character cannot be a byte
    "abc",  # decodes, but not to ASCII
    _b64(b"game:a,e1"),  # two fields
    _b64(b"game:a,e1,1,2"),  # four fields
    _b64(b"game:a,e1,x"),
    _b64(b"game:a,e1,-1"),
    _b64(b"game:a,e1,"),
    _b64(b"GAME:A,e1,1"),  # channel breaks the naming rules
    _b64(b":lead,e1,1"),
    _b64(b"game:a,E1,1"),  # epoch breaks its rules
    _b64(b"game:a,,1"),
    _b64(b"game:a," + b"e" * 33 + b",1"),
    _b64(b"game:\xc3\xa9,e1,1"),  # not ASCII
    encode_position("game:a", "e1", 1) + ".",  # empty segment
    "." + encode_position("game:a", "e1", 1),
    encode_position("game:a", "e1", 1) + "..",
    encode_position("game:a", "e1", 1) + ".!!!",  # one bad segment spoils the token
    "A" * (MAX_TOKEN_LENGTH + 1),
]


@pytest.mark.parametrize("token", BAD_TOKENS, ids=range(len(BAD_TOKENS)))
def test_bad_tokens_raise_bad_resume_token(token: Any) -> None:
    with pytest.raises(BadResumeToken) as info:
        decode_token(token)
    assert info.value.code == "bad_resume_token" and info.value.status == 400
    assert info.value.message


def test_long_but_valid_token_decodes() -> None:
    state = {f"game:g{i:04d}": Position("e1", i) for i in range(400)}
    token = encode_positions(state)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert decode_token(token) == state


@settings(max_examples=300)
@given(st.one_of(
    st.text(max_size=200),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=",
            max_size=200),
    st.binary(max_size=120).map(_b64),
    st.lists(st.binary(max_size=60).map(_b64), min_size=1, max_size=5).map(".".join),
))
def test_any_string_decodes_or_raises_bad_resume_token(token: str) -> None:
    try:
        result = decode_token(token)
    except BadResumeToken:
        return
    for channel, pos in result.items():
        validate_channel(channel)
        assert re.fullmatch(r"[a-z0-9]{1,32}", pos.epoch) and pos.offset >= 0


# --------------------------------------------------------------------------- channels


VALID_NAMES = ["game:crash", "odds:football:epl", "sports:event:123", "user:42:balances", "a",
               "0", "x" * MAX_CHANNEL_LENGTH, "a.b-c_d:e", "9lives"]
INVALID_NAMES: list[Any] = ["", "Game:crash", "game crash", ":lead", "-lead", "_lead", ".lead",
                            "x" * (MAX_CHANNEL_LENGTH + 1), "game:*", "*", "é", "a/b",
                            "a,b", "game:crash\n", None, 5, ["game:crash"], b"game:crash"]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_channel_names(name: str) -> None:
    assert validate_channel(name) == name
    assert validate_pattern(name) == name
    assert not is_pattern(name)


@pytest.mark.parametrize("name", INVALID_NAMES, ids=range(len(INVALID_NAMES)))
def test_invalid_channel_names(name: Any) -> None:
    with pytest.raises(InvalidChannel) as info:
        validate_channel(name)
    assert info.value.code == "invalid_channel" and info.value.status == 400


@pytest.mark.parametrize("pattern", ["*", "game:*", "odds:football:*", "*:balances", "a*b*c",
                                     "user:*:balances", "**"])
def test_valid_patterns(pattern: str) -> None:
    assert validate_pattern(pattern) == pattern
    assert is_pattern(pattern)


@pytest.mark.parametrize("pattern", ["", "Game:*", "game: *", ":*", "-*", "x" * 201, "game:?",
                                     "game:[a]", None, 3])
def test_invalid_patterns(pattern: Any) -> None:
    with pytest.raises(InvalidChannel):
        validate_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("game:*", "game:crash", True),
        ("game:*", "game:crash:extra", True),  # '*' runs across ':'
        ("game:*", "game:", True),
        ("game:*", "games:crash", False),
        ("game:*", "xgame:crash", False),
        ("odds:football:*", "odds:football:epl", True),
        ("odds:football:*", "odds:tennis:atp", False),
        ("*", "anything:at:all", True),
        ("*:balances", "user:42:balances", True),
        ("*:balances", "user:42:balances:old", False),
        ("a.b*", "a.bc", True),
        ("a.b*", "axbc", False),  # '.' is literal, not a regex wildcard
        ("a*c", "abc", True),
        ("a*c", "abcd", False),
        ("game:crash", "game:crash", True),
        ("game:crash", "game:crash2", False),
    ],
)
def test_pattern_matching(pattern: str, channel: str, matches: bool) -> None:
    assert bool(pattern_matcher(pattern).fullmatch(channel)) is matches


@given(channels)
def test_a_name_as_pattern_matches_only_itself(name: str) -> None:
    assert validate_pattern(name) == name
    assert pattern_matcher(name).fullmatch(name)
    assert not pattern_matcher(name).fullmatch(name + "x")
    if "." in name:  # regex metacharacters are literal
        assert not pattern_matcher(name).fullmatch(name.replace(".", "x"))


@given(channels, channels)
def test_prefix_pattern_matches_every_extension(prefix: str, rest: str) -> None:
    pattern = prefix[:150] + "*"
    assert pattern_matcher(pattern).fullmatch(prefix[:150] + rest)


def test_private_channels() -> None:
    assert is_private("user:42:balances")
    assert not is_private("game:crash")
    assert not is_private("users:42")


@pytest.mark.parametrize(
    ("name", "attrs"),
    [
        ("game:crash", {"kind": "game", "game": "crash"}),
        ("odds:football:epl", {"kind": "odds", "sport": "football", "competition": "epl"}),
        ("odds:football", {"kind": "odds"}),
        ("sports:event:123", {"kind": "sports", "event": "123"}),
        ("user:42:balances", {"kind": "user", "user": "42"}),
        ("fairness:crash", {"kind": "fairness"}),
    ],
)
def test_channel_attributes(name: str, attrs: dict[str, str]) -> None:
    assert dict(channel_attributes(name)) == attrs


# --------------------------------------------------------------------------- filters


def test_filter_parse_empty_means_no_filter() -> None:
    assert Filter.parse(None) is None
    assert Filter.parse({}) is None


@pytest.mark.parametrize("raw", ["game=crash", ["game"], 5, True,
                                 {"": "x"}, {"game": []}, {"game": {"a": 1}}, {"game": None},
                                 {"game": [None, {"a": 1}]}])
def test_filter_parse_rejects_bad_shapes(raw: Any) -> None:
    with pytest.raises(BadParameter) as info:
        Filter.parse(raw)
    assert info.value.code == "bad_parameter"


def test_filter_parse_normalises_values_and_interns() -> None:
    flt = Filter.parse({"sport": "football", "bookmaker": ["bet365", "pinnacle"], "n": 3})
    assert flt is not None
    assert dict(flt.terms) == {"sport": frozenset({"football"}),
                               "bookmaker": frozenset({"bet365", "pinnacle"}),
                               "n": frozenset({"3"})}
    again = Filter.parse({"n": [3], "bookmaker": ["pinnacle", "bet365"], "sport": ["football"]})
    assert again is flt  # equal filters are one object


def test_filter_matches_message_and_channel_attributes() -> None:
    flt = Filter.parse({"sport": "football", "bookmaker": ["bet365", "pinnacle"]})
    assert flt is not None
    assert flt.matches("odds:football:epl", {"bookmaker": "bet365"})
    assert flt.matches("odds:football:epl", {"bookmaker": "pinnacle", "extra": "x"})
    assert not flt.matches("odds:football:epl", {"bookmaker": "williamhill"})
    assert not flt.matches("odds:football:epl", None)  # no bookmaker at all
    assert not flt.matches("odds:tennis:atp", {"bookmaker": "bet365"})
    # message attributes win over the ones implied by the channel name
    assert flt.matches("odds:tennis:atp", {"bookmaker": "bet365", "sport": "football"})
    game = Filter.parse({"game": ["crash", "double"]})
    assert game is not None
    assert game.matches("game:crash", None) and game.matches("game:double", {})
    assert not game.matches("game:slots", None)


def test_filter_on_a_boolean_matches_a_published_boolean_attribute() -> None:
    """``{"filter":{"live":true}}`` must select messages published with
    ``"attrs":{"live":true}``; the hub stores that attribute as ``"true"``."""
    from wagerwire.core.hub import _clean_attrs

    stored = _clean_attrs({"live": True, "n": 3})
    flt = Filter.parse({"live": True})
    assert flt is not None
    assert flt.matches("events:live", stored), (flt.terms, stored)
    as_text = Filter.parse({"live": "true"})
    assert as_text is not None and as_text.matches("events:live", stored)


# --------------------------------------------------------------------------- native ops


def test_parse_subscribe() -> None:
    token = encode_position("game:crash", "e1", 7)
    op = native.parse_op(orjson.dumps({"op": "subscribe", "channels": ["game:crash", "odds:*"],
                                       "filter": {"sport": "football"}, "since": token}))
    assert isinstance(op, native.Subscribe)
    assert op.channels == ["game:crash", "odds:*"]
    assert op.filter is Filter.parse({"sport": "football"})
    assert op.since == {"game:crash": Position("e1", 7)}
    bare = native.parse_op('{"op":"subscribe","channels":["game:crash"]}')
    assert isinstance(bare, native.Subscribe) and bare.filter is None and bare.since is None


def test_parse_unsubscribe_ping_publish() -> None:
    unsub = native.parse_op('{"op":"unsubscribe","channels":["game:crash"]}')
    assert unsub == native.Unsubscribe(["game:crash"])
    assert native.parse_op(b'{"op":"ping"}') == native.Ping()
    pub = native.parse_op('{"op":"publish","channel":"game:crash","data":{"x":[1,2]},'
                          '"attrs":{"k":"v"},"idempotency_key":"r-1"}')
    assert pub == native.Publish("game:crash", {"x": [1, 2]}, {"k": "v"}, "r-1")
    minimal = native.parse_op('{"op":"publish","channel":"game:crash","data":null}')
    assert minimal == native.Publish("game:crash", None, None, None)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("{bad", MalformedJson),
        ("", MalformedJson),
        (b"\xff\xfe", MalformedJson),
        ("[1]", MalformedJson),
        ('"ping"', MalformedJson),
        ("{}", MalformedJson),
        ('{"op":1}', MalformedJson),
        ('{"op":null}', MalformedJson),
        ('{"op":["ping"]}', MalformedJson),
        ('{"op":"frobnicate"}', UnknownOp),
        ('{"op":"PING"}', UnknownOp),
        ('{"op":""}', UnknownOp),
        ('{"op":"subscribe"}', BadParameter),
        ('{"op":"subscribe","channels":"game:crash"}', BadParameter),
        ('{"op":"subscribe","channels":["game:crash"],"since":5}', BadParameter),
        ('{"op":"subscribe","channels":["game:crash"],"filter":"x"}', BadParameter),
        ('{"op":"subscribe","channels":["game:crash"],"filter":{"a":[]}}', BadParameter),
        ('{"op":"subscribe","channels":["game:crash"],"since":"!!!"}', BadResumeToken),
        ('{"op":"unsubscribe"}', BadParameter),
        ('{"op":"unsubscribe","channels":{"a":1}}', BadParameter),
        ('{"op":"publish","channel":"game:crash"}', BadParameter),
        ('{"op":"publish","channel":"game:crash","data":1,"idempotency_key":5}', BadParameter),
        ('{"op":"publish","channel":"game:crash","data":1,"attrs":["a"]}', BadParameter),
    ],
)
def test_parse_op_errors(frame: str | bytes, error: type[ClientError]) -> None:
    with pytest.raises(error) as info:
        native.parse_op(frame)
    assert type(info.value) is error
    assert info.value.message


def test_unknown_op_is_not_echoed_in_full() -> None:
    with pytest.raises(UnknownOp) as info:
        native.parse_op(orjson.dumps({"op": "x" * 10_000}))
    assert len(info.value.message) < 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
frames = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping", "publish", "nope"])},
    optional={
        "channels": json_values | st.lists(channels, max_size=3),
        "channel": json_values | channels,
        "since": json_values | st.text(max_size=40) | positions.map(
            lambda p: encode_position("game:a", p.epoch, p.offset)),
        "filter": json_values,
        "data": json_values,
        "attrs": json_values,
        "idempotency_key": json_values,
    },
)


@settings(max_examples=300)
@given(frames)
def test_parse_op_answers_any_frame_with_an_op_or_a_client_error(frame: dict[str, Any]) -> None:
    try:
        op = native.parse_op(orjson.dumps(frame))
    except ClientError as exc:
        assert exc.code in {"malformed_json", "unknown_op", "bad_parameter", "bad_resume_token"}
        return
    assert isinstance(op, native.NativeOp)


# --------------------------------------------------------------------------- native frames


@given(channels, epochs, st.integers(min_value=1, max_value=2**53),
       st.integers(min_value=0, max_value=2**53), json_values)
def test_message_frame_is_json_with_a_resuming_token(
    channel: str, epoch: str, offset: int, ts: int, data: Any
) -> None:
    message = Message(channel, offset, epoch, ts, orjson.dumps(data))
    frame = orjson.loads(native.encode_message(message))
    assert frame == {"op": "message", "channel": channel, "offset": offset, "epoch": epoch,
                     "ts": ts, "data": data, "token": frame["token"]}
    assert decode_token(frame["token"]) == {channel: Position(epoch, offset)}


def test_reply_frames() -> None:
    assert orjson.loads(native.encode_pong()) == {"op": "pong"}
    assert orjson.loads(native.encode_error(InvalidChannel("nope"))) == {
        "op": "error", "code": "invalid_channel", "message": "nope"}
    assert orjson.loads(native.encode_subscribed(SubscribeReply("game:a", "e1", 4, True))) == {
        "op": "subscribed", "channel": "game:a", "epoch": "e1", "offset": 4, "recovered": True}
    pattern = orjson.loads(native.encode_subscribed(
        SubscribeReply("game:*", "", 0, False, pattern=True)))
    assert pattern["pattern"] is True and pattern["recovered"] is False
    assert orjson.loads(native.encode_unsubscribed(["game:a"])) == {
        "op": "unsubscribed", "channels": ["game:a"]}
    result = PublishResult(Message("game:a", 3, "e1", 1, b"1"), duplicate=True)
    assert orjson.loads(native.encode_published(result, "k-1")) == {
        "op": "published", "channel": "game:a", "epoch": "e1", "offset": 3, "duplicate": True,
        "idempotency_key": "k-1"}
    assert "idempotency_key" not in orjson.loads(native.encode_published(result))
