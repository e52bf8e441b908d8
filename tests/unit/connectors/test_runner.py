"""The connector's loop against a stand-in hub (pure logic of the adapter: no sockets)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from wagerwire.client.backoff import Backoff
from wagerwire.connectors.model import Publication
from wagerwire.connectors.runner import Connector, SessionEnded, SourceRefused
from wagerwire.connectors.sources import parse_source
from wagerwire.core.hub import HubLimits
from wagerwire.core.messages import Message, PublishResult


@dataclass
class FakeStore:
    messages: dict[str, list[Message]] = field(default_factory=dict)

    async def read_last(self, channel: str, limit: int) -> list[Message]:
        return self.messages.get(channel, [])[-limit:]

    async def find_idempotent(self, channel: str, key: str, since: int) -> Message | None:
        return next((m for m in self.messages.get(channel, []) if m.idempotency_key == key),
                    None)


class FakeHub:
    """Publishes into lists, with a small random-ish delay so lanes interleave."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.limits = HubLimits()

    async def publish(self, channel: str, data: Any, *, attrs: Any = None,
                      idempotency_key: str | None = None) -> PublishResult:
        await asyncio.sleep(0.001 * (len(channel) % 3))
        found = None if idempotency_key is None else await self.store.find_idempotent(
            channel, idempotency_key, 0)
        if found is not None:
            return PublishResult(found, duplicate=True)
        stored = self.store.messages.setdefault(channel, [])
        message = Message(channel, len(stored) + 1, "e", 0, orjson.dumps(data), attrs,
                          idempotency_key)
        stored.append(message)
        return PublishResult(message)


def _connector(session: Any, hub: FakeHub, **options: Any) -> Connector:
    config = parse_source({"name": "src", "url": "http://127.0.0.1:9", "dialect": "native",
                           "options": options})
    return Connector(config, hub, session, backoff=Backoff(0.01, 0.02),  # type: ignore[arg-type]
                     checkpoint_s=0.0, rand=lambda: 0.5)


async def test_refused_credentials_put_the_source_in_error_and_it_keeps_backing_off() -> None:
    calls = []

    class Refusing:
        async def run(self, connector: Connector) -> None:
            calls.append(connector.health.state)
            raise SourceRefused("unauthorized", "credentials refused upstream (401)")

    connector = _connector(Refusing(), FakeHub())
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(connector.run())
    while len(calls) < 3:  # retried...
        assert loop.time() - started < 10, calls
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # ...but on the back-off (at least 0.005 s apart), not spinning
    assert len(calls) <= 1 + (loop.time() - started) / 0.005
    assert connector.health.state == "error" and connector.health.error_code == "unauthorized"
    assert len(calls) - 1 <= connector.health.reconnects <= len(calls)


async def test_submitted_publications_stay_in_order_per_channel_and_move_the_cursor() -> None:
    hub = FakeHub()
    done: list[int] = []

    class Submitting:
        async def run(self, connector: Connector) -> None:
            if done:  # one session is enough
                await asyncio.Event().wait()
            connector.connected()
            for i in range(60):
                channel = ("a:x", "bb:y", "ccc:z")[i % 3]
                await connector.submit(Publication(channel, {"i": i}, f"msg:{i}"),
                                       lambda i=i: done.append(i))
            await connector.flush()
            await connector.save_cursor()
            raise SessionEnded("done")

    connector = _connector(Submitting(), hub)
    task = asyncio.create_task(connector.run())
    while len(done) < 60:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for channel in ("a:x", "bb:y", "ccc:z"):
        values = [orjson.loads(m.data)["i"] for m in hub.store.messages[channel]]
        assert values == sorted(values) and len(values) == 20
    assert sorted(done) == list(range(60))
    assert connector.health.messages == 60


async def test_a_failover_group_never_publishes_a_round_behind_the_last_one() -> None:
    hub = FakeHub()
    config = parse_source({"name": "b", "url": "http://h", "dialect": "native", "group": "g"})
    orders: dict[str, int] = {}
    a = Connector(config, hub, None, orders=orders)  # type: ignore[arg-type]
    b = Connector(config, hub, None, orders=orders)  # type: ignore[arg-type]
    assert await a.publish(Publication("game:crash", {"index": 5}, "round:crash:5", order=5))
    assert not await b.publish(Publication("game:crash", {"index": 4}, "round:crash:4", order=4))
    assert not await b.publish(Publication("game:crash", {"index": 5}, "round:crash:5", order=5))
    assert await b.publish(Publication("game:crash", {"index": 6}, "round:crash:6", order=6))
    assert [orjson.loads(m.data)["index"] for m in hub.store.messages["game:crash"]] == [5, 6]
    assert b.health.duplicates == 2
