"""redis:// and redis+sentinel:// URLs (pure parsing) and the broker URL checks."""

from __future__ import annotations

import pytest

from wagerwire.brokers.redis_url import RedisTarget, is_redis_url, parse_redis_url
from wagerwire.errors import BadParameter
from wagerwire.node.backends import build_broker, redis_url_and_prefix


def test_one_server_urls_pass_through() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/2") == RedisTarget("redis://127.0.0.1:6379/2")
    assert not parse_redis_url("rediss://h:1/0").sentinel


def test_sentinel_url() -> None:
    target = parse_redis_url("redis+sentinel://10.0.0.1:26379,[::1]:26380/mymaster")
    assert target.sentinel
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.password) == ("mymaster", 0, None)


def test_sentinel_url_with_db_and_password() -> None:
    target = parse_redis_url("redis+sentinel://:s%40cret@h:1/svc/3")
    assert (target.sentinels, target.service, target.db, target.password) == (
        (("h", 1),), "svc", 3, "s@cret")


@pytest.mark.parametrize("url", [
    "redis+sentinel://h/svc",  # no port
    "redis+sentinel://h:0/svc",
    "redis+sentinel://h:1",  # no service
    "redis+sentinel://h:1/svc/x",  # db not a number
    "redis+sentinel://h:1/a/1/2",
    "redis+sentinel://h:1,:2/svc",
])
def test_bad_sentinel_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_the_broker_takes_sentinel_urls_with_wagerwire_options() -> None:
    url = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/ww?prefix=p1&listen=local"
    assert is_redis_url(url)
    clean, prefix = redis_url_and_prefix(url)
    assert (clean, prefix) == ("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/ww", "p1")
    broker = build_broker(url, None, 300)
    assert broker.__class__.__name__ == "RedisBroker"
    with pytest.raises(BadParameter, match="host:port"):
        build_broker("redis+sentinel://nowhere/ww", None, 300)
