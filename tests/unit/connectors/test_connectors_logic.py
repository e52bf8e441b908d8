"""The connectors' sans-I/O part: source entries, keys, markers, normalising, gaps, health."""

from __future__ import annotations

import orjson
import pytest

from wagerwire.analytics.fairness import verify_round
from wagerwire.connectors.gaps import SequenceTracker
from wagerwire.connectors.health import SourceHealth
from wagerwire.connectors.model import (
    MAX_KEY,
    Gap,
    checkpoint_channel,
    cursor_payload,
    gap_marker,
    idempotency_key,
    read_cursor,
)
from wagerwire.connectors.normalise import (
    datastream_round,
    native_publication,
    parse_rfc3339_ms,
    stake_publication,
    trackersino_round,
)
from wagerwire.connectors.sources import parse_source, parse_sources
from wagerwire.dialects.datastream import round_object
from wagerwire.dialects.trackersino import round_frame
from wagerwire.errors import BadParameter
from wagerwire.sources.casino import CasinoSimulator, demo_games

GAMES = {spec.slug: spec for spec in demo_games()}


def _round(slug: str, index: int = 7, now: int = 1_765_000_000_123) -> dict[str, object]:
    return CasinoSimulator(GAMES[slug], 42, chain_length=100).round_at(index, now)


# -- sources -----------------------------------------------------------------------------------


def test_a_source_entry_is_validated_and_never_echoes_its_credentials() -> None:
    cfg = parse_source({"name": "eu", "url": "http://10.0.0.5:8000/", "dialect": "native",
                        "credentials": "ww_secret", "subscriptions": "game:*, odds:*",
                        "channels": {"game:crash": "game:eu-crash"}})
    assert cfg.url == "http://10.0.0.5:8000"
    assert cfg.subscriptions == ("game:*", "odds:*")
    assert cfg.target("game:crash") == "game:eu-crash"
    assert cfg.target("game:slot") == "game:slot"
    assert cfg.dedupe_group == "eu"
    assert cfg.public()["credentials"] == "***"
    assert "ww_secret" not in orjson.dumps(cfg.public()).decode()


@pytest.mark.parametrize("entry, message", [
    ({"url": "http://a", "dialect": "native"}, "needs a name"),
    ({"name": "x", "url": "ftp://a", "dialect": "native"}, "url must be"),
    ({"name": "x", "url": "http://a", "dialect": "smoke"}, "dialect must be"),
    ({"name": "x", "url": "http://a", "dialect": "native", "colour": 1}, "unknown key"),
    ({"name": "x", "url": "http://a", "dialect": "native", "channels": {"a": "B C"}},
     "source x"),
    ({"name": "x", "url": "http://a", "dialect": "native", "start": "middle"}, "start must"),
])
def test_a_bad_source_entry_says_what_is_wrong(entry: dict[str, object], message: str) -> None:
    with pytest.raises(BadParameter, match=message):
        parse_source(entry)


def test_source_names_are_unique() -> None:
    entry = {"name": "x", "url": "http://a", "dialect": "native"}
    with pytest.raises(BadParameter, match="used twice"):
        parse_sources([entry, entry])


# -- keys, markers, cursors ----------------------------------------------------------------------


def test_idempotency_keys_come_from_the_group_and_stay_bounded() -> None:
    assert idempotency_key("feed", "round:crash:7") == "cx:feed:round:crash:7"
    long = idempotency_key("feed", "x" * 500)
    assert len(long) <= MAX_KEY and long.startswith("cx:feed:h:")
    assert long == idempotency_key("feed", "x" * 500)


def test_a_gap_marker_has_the_documented_shape() -> None:
    gap = Gap("game:crash", "game:crash", "17", "25", 7, "history_lost")
    pub = gap_marker(gap, source="eu", dialect="native", now_ms=5)
    assert pub.channel == "game:crash" and pub.attrs == {"gap": "true"}
    assert pub.data == {"type": "gap", "gap": {
        "source": "eu", "dialect": "native", "upstream": "game:crash", "after": "17",
        "before": "25", "missing": 7, "reason": "history_lost", "detected_at": 5}}
    assert pub.identity == gap_marker(gap, source="eu", dialect="native", now_ms=9).identity
    # no dialect encoder takes a marker for a round
    assert round_frame(pub.data) is None
    assert round_object(pub.data, 0) is None


def test_a_cursor_round_trips_and_ignores_other_dialects() -> None:
    saved = cursor_payload("eu", "native", {"positions": {"game:crash": ["e", 3]}}, 1)
    assert read_cursor(saved, "native") == {"positions": {"game:crash": ["e", 3]}}
    assert read_cursor(saved, "trackersino") == {}
    assert read_cursor("nonsense", "native") == {}
    assert checkpoint_channel("eu") == "connector:eu"


# -- normalising ---------------------------------------------------------------------------------


def test_rfc3339_times_parse_to_milliseconds() -> None:
    assert parse_rfc3339_ms("1970-01-01T00:00:00Z") == 0
    assert parse_rfc3339_ms("2026-05-28T15:05:15Z") == 1779980715000
    assert parse_rfc3339_ms("2026-05-28T17:05:15.250+02:00") == 1779980715250
    assert parse_rfc3339_ms("yesterday") is None
    assert parse_rfc3339_ms(5) is None


def test_native_rounds_are_keyed_by_their_round_other_messages_by_offset() -> None:
    rnd = _round("crash")
    pub = native_publication("game:crash", "e1", 9, 1, rnd, None, "eu")
    assert pub.identity == "round:crash:7" and pub.order == 7
    assert pub.attrs == {"src": "eu", "src_pos": "e1:9"}
    other = native_publication("odds:x", "e1", 9, 1, {"odds": 2.0}, {"sport": "x"}, "eu")
    assert other.identity == "msg:odds:x:e1:9" and other.order is None
    assert other.attrs == {"sport": "x", "src": "eu", "src_pos": "e1:9"}


@pytest.mark.parametrize("slug", ["stake-crash", "roobet-crash", "crash"])
def test_a_trackersino_frame_becomes_the_same_round(slug: str) -> None:
    rnd = _round(slug)
    frame = round_frame(rnd)
    pub = trackersino_round(orjson.loads(orjson.dumps(frame)), "trackersino:x")
    assert pub is not None
    assert pub.channel == f"game:{slug}" and pub.identity == f"round:{slug}:7"
    data = pub.data
    assert data["round_id"] == rnd["round_id"] and data["index"] == 7
    assert data["result"]["multiplier"] == rnd["result"]["multiplier"]  # type: ignore[index]
    assert data["raw"] == rnd["raw"]
    assert round_frame(data) == frame  # encodes back to the very same frame downstream
    if slug != "crash":  # the Stake and Roobet envelopes reveal the hash: it recomputes
        verification = verify_round(data)
        assert verification.valid, verification.reason


@pytest.mark.parametrize("slug", ["crash", "double", "slot", "wallstreet"])
def test_a_datastream_round_becomes_the_same_round(slug: str) -> None:
    rnd = _round(slug)
    frame = round_object(rnd, 1_765_000_000_999)
    pub = datastream_round(frame, "datastream:x")
    assert pub is not None
    assert pub.identity == f"round:{slug}:7" and pub.ts == 1_765_000_000_999
    assert pub.data["game_type"] == rnd["game_type"]
    assert pub.data["result"] == {k: v for k, v in rnd["result"].items()  # type: ignore[union-attr]
                                  if k in pub.data["result"]}
    again = round_object(pub.data, 1_765_000_000_999)
    assert again == frame


def test_frames_that_are_not_rounds_are_refused() -> None:
    assert trackersino_round({"game_id": "x"}, "s") is None
    assert datastream_round({"round_id": 1, "game_slug": "x", "extras": "[]"}, "s") is None
    assert datastream_round({"round_id": 1, "game_slug": "x", "extras": "{"}, "s") is None
    assert stake_publication({"channel": "user:balances", "payload": {"btc": "1"}}) is None
    assert stake_publication({"type": "error"}) is None
    pub = stake_publication({"channel": "game:crash", "payload": _round("crash")})
    assert pub is not None and pub.identity == "round:crash:7"


# -- gaps and health ------------------------------------------------------------------------------


def test_the_sequence_tracker_tells_new_duplicate_and_gap() -> None:
    tracker = SequenceTracker({"crash": 5})
    assert tracker.observe("slot", 40).kind == "new"
    assert tracker.observe("crash", 6).kind == "new"
    assert tracker.observe("crash", 5).kind == "duplicate"
    seen = tracker.observe("crash", 9)
    assert (seen.kind, seen.after, seen.missing) == ("gap", 5, 3)
    tracker.advance("crash", 9)
    tracker.advance("crash", 8)  # never backwards
    assert tracker.last["crash"] == 9


def test_health_counts_and_reports_age_and_lag() -> None:
    health = SourceHealth("eu", "native")
    health.connected(1000)
    health.published(2000, 1500, duplicate=False)
    health.published(2100, 1500, duplicate=True)
    snap = health.snapshot(4000)
    assert snap["connected"] is True and snap["messages"] == 1 and snap["duplicates"] == 1
    assert snap["lag_ms"] == 500 and snap["last_message_age_s"] == 2.0
    health.failed("unauthorized", "credentials refused upstream")
    snap = health.snapshot(4000)
    assert (snap["state"], snap["connected"], snap["error_code"]) == (
        "error", False, "unauthorized")


# -- settings ------------------------------------------------------------------------------------


def test_sources_come_from_toml_or_environment_json(tmp_path: object) -> None:
    from pathlib import Path

    from wagerwire.config import load_settings

    path = Path(str(tmp_path)) / "c.toml"
    path.write_text('[[sources]]\nname = "eu"\nurl = "http://a:1"\ndialect = "native"\n'
                    'subscriptions = ["game:*"]\n')
    settings = load_settings(config_file=str(path), environ={})
    (cfg,) = parse_sources(settings.sources)
    assert (cfg.name, cfg.subscriptions) == ("eu", ("game:*",))
    env = load_settings(environ={"WAGERWIRE_SOURCES": '[{"name": "x", "url": "ws://b",'
                                                      ' "dialect": "stake"}]'})
    assert parse_sources(env.sources)[0].dialect == "stake"
    with pytest.raises(BadParameter, match="sources"):
        load_settings(environ={"WAGERWIRE_SOURCES": "{"})
    rules = settings.retention_rules()
    assert [r.pattern for r in rules] == ["connector:*", "*"]
