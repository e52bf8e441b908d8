"""SSE encoder and client-parser tests: the parser follows WHATWG, the encoder must survive it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.wire.sse import (
    SSE_HEADERS,
    parse_last_event_id,
    sse_comment,
    sse_event,
    sse_retry,
)
from wagerwire.wire.sse_parser import SseMessage, SseParser


def parse(stream: bytes) -> list[SseMessage]:
    return SseParser().feed(stream)


def parse_bytewise(stream: bytes) -> list[SseMessage]:
    parser = SseParser()
    out: list[SseMessage] = []
    for i in range(len(stream)):
        out += parser.feed(stream[i : i + 1])
    return out


# --------------------------------------------------------------------------- encoder


def test_sse_event_plain() -> None:
    assert sse_event(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_sse_event_with_type_and_id() -> None:
    assert sse_event(b"x", event="initial", id="42") == b"event: initial\nid: 42\ndata: x\n\n"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_event_multiline_data(newline: bytes) -> None:
    encoded = sse_event(b"line1" + newline + b"line2" + newline + b"line3")
    assert encoded == b"data: line1\ndata: line2\ndata: line3\n\n"
    assert parse(encoded) == [SseMessage("message", "line1\nline2\nline3", "", None)]


def test_sse_event_empty_and_trailing_newline_data_round_trip() -> None:
    assert sse_event(b"") == b"data: \n\n"
    assert parse(sse_event(b"")) == [SseMessage("message", "", "", None)]
    assert parse(sse_event(b"a\n")) == [SseMessage("message", "a\n", "", None)]
    assert parse(sse_event(b"\n\n")) == [SseMessage("message", "\n\n", "", None)]


def test_sse_event_keeps_leading_space() -> None:
    assert parse(sse_event(b"  x", id=" y")) == [SseMessage("message", "  x", " y", None)]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", "\n"])
def test_sse_event_rejects_bad_id(bad: str) -> None:
    with pytest.raises(ValueError):
        sse_event(b"x", id=bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb"])
def test_sse_event_rejects_bad_event_type(bad: str) -> None:
    with pytest.raises(ValueError):
        sse_event(b"x", event=bad)


def test_sse_event_empty_id_resets() -> None:
    stream = sse_event(b"1", id="7") + sse_event(b"2", id="")
    assert [m.id for m in parse(stream)] == ["7", ""]


def test_sse_comment() -> None:
    assert sse_comment("heartbeat 1705432800") == b": heartbeat 1705432800\n\n"
    assert sse_comment("") == b": \n\n"
    injected = sse_comment("a\ndata: evil\r\nid: 9")
    assert injected == b": a\n: data: evil\n: id: 9\n\n"
    parser = SseParser()
    assert parser.feed(injected) == []
    assert parser.last_event_id == ""


def test_sse_retry() -> None:
    assert sse_retry(2500) == b"retry: 2500\n\n"
    parser = SseParser()
    assert parser.feed(sse_retry(2500)) == []
    assert parser.retry == 2500
    assert parser.feed(sse_event(b"x")) == [SseMessage("message", "x", "", 2500)]
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError):
            sse_retry(bad)  # type: ignore[arg-type]


def test_sse_headers() -> None:
    headers = dict(SSE_HEADERS)
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Connection" not in headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("   ", None), (" 513 ", "513"), ("a.b:c", "a.b:c")],
)
def test_parse_last_event_id(value: str | None, expected: str | None) -> None:
    assert parse_last_event_id(value) == expected


# --------------------------------------------------------------------------- round trip

field_text = st.text(st.characters(exclude_characters="\r\n\0", codec="utf-8"), max_size=20)


@given(
    events=st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), max_size=60),
            st.one_of(st.none(), field_text),
            st.one_of(st.none(), field_text),
        ),
        max_size=8,
    ),
    retry=st.one_of(st.none(), st.integers(0, 10**9)),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
@settings(max_examples=300, deadline=None)
def test_parser_round_trips_encoder_output(
    events: list[tuple[str, str | None, str | None]],
    retry: int | None,
    cuts: list[int],
) -> None:
    stream = b"" if retry is None else sse_retry(retry)
    expected: list[SseMessage] = []
    last_id = ""
    for data, event, event_id in events:
        stream += sse_comment("hb")
        stream += sse_event(data.encode(), event=event, id=event_id)
        if event_id is not None:
            last_id = event_id
        normalized = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(SseMessage(event or "message", normalized, last_id, retry))
    points = sorted({min(c, len(stream)) for c in cuts})
    parser = SseParser()
    got: list[SseMessage] = []
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        got += parser.feed(stream[a:b])
    assert got == expected
    assert parser.last_event_id == last_id


# --------------------------------------------------------------------------- WHATWG edge cases


def test_whatwg_example_multiline() -> None:
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert parse(stream) == [SseMessage("message", "YHOO\n+2\n10", "", None)]


def test_whatwg_example_ids_and_comment() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    assert parse(stream) == [
        SseMessage("message", "first event", "1", None),
        SseMessage("message", "second event", "", None),
        SseMessage("message", " third event", "", None),
    ]


def test_whatwg_example_empty_data_fields() -> None:
    parser = SseParser()
    assert parser.feed(b"data\n\ndata\ndata\n\ndata:") == [
        SseMessage("message", "", "", None),
        SseMessage("message", "\n", "", None),
    ]
    parser.feed_eof()  # the unterminated event is discarded
    assert parser.feed(b"\n") == []


def test_whatwg_example_optional_space() -> None:
    assert parse(b"data:test\n\ndata: test\n\n") == [
        SseMessage("message", "test", "", None),
        SseMessage("message", "test", "", None),
    ]


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_line_endings(end: bytes) -> None:
    stream = b"event: tick" + end + b"data: a" + end + b"data: b" + end + end
    expected = [SseMessage("tick", "a\nb", "", None)]
    assert parse(stream) == expected
    assert parse_bytewise(stream) == expected


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [SseMessage("message", "a\nb", "", None)]
    assert parser.feed(b"\n\r\n") == []  # LF ends the CR; CRLF is one more blank line


def test_cr_then_cr_is_two_line_ends() -> None:
    assert parse_bytewise(b"data: a\r\r") == [SseMessage("message", "a", "", None)]


def test_leading_bom_dropped_once() -> None:
    bom = "\ufeff".encode()
    assert parse(bom + b"data: x\n\n") == [SseMessage("message", "x", "", None)]
    assert parse_bytewise(bom + b"data: x\n\n") == [SseMessage("message", "x", "", None)]
    # A second BOM is part of the field name, so the field is unknown and ignored.
    assert parse(bom + bom + b"data: x\n\n") == []


def test_comments_and_unknown_fields_ignored() -> None:
    stream = b":comment\nfoo: bar\ndata : spaced name\nDATA: upper\ndata: kept\n\n"
    assert parse(stream) == [SseMessage("message", "kept", "", None)]


def test_event_type_reset_after_dispatch_and_after_empty_block() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n"
    assert [(m.event, m.data) for m in parse(stream)] == [
        ("a", "1"),
        ("message", "2"),
        ("message", "3"),
    ]


def test_id_persists_and_commits_without_data() -> None:
    parser = SseParser()
    assert [m.id for m in parser.feed(b"id: 5\ndata: a\n\ndata: b\n\n")] == ["5", "5"]
    assert parser.feed(b"id: 9\n\n") == []
    assert parser.last_event_id == "9"
    assert [m.id for m in parser.feed(b"data: c\n\n")] == ["9"]


def test_id_with_nul_ignored() -> None:
    assert [m.id for m in parse(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n")] == ["1", "1"]


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 1000", 1000),
        (b"retry:0", 0),
        (b"retry: 10a", None),
        (b"retry: -1", None),
        (b"retry:", None),
        (b"retry: 1.5", None),
        (b"retry: \xc2\xb2", None),  # superscript two: a digit to Python, not ASCII
        (b"retry:  5", None),
    ],
)
def test_retry_field(line: bytes, retry: int | None) -> None:
    parser = SseParser()
    assert parser.feed(line + b"\ndata: x\n\n") == [SseMessage("message", "x", "", retry)]
    assert parser.retry == retry


def test_invalid_utf8_replaced() -> None:
    assert parse(b"data: a\xffb\n\n") == [SseMessage("message", "a\ufffdb", "", None)]


def test_multibyte_character_split_across_chunks() -> None:
    raw = "data: é😀\n\n".encode()
    assert parse_bytewise(raw) == [SseMessage("message", "é😀", "", None)]


def test_colon_in_value_kept() -> None:
    assert parse(b"event: a:b\ndata: c: d\n\n") == [SseMessage("a:b", "c: d", "", None)]
