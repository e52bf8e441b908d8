"""Native hub-to-hub relay: the SDK's resumable subscription, published into this hub.

The SDK's protocol (``client/protocol.py``) does the continuity: resume tokens, replay,
REST backfill of what the upstream could not replay, dedupe by offset. This session only
carries its output into the hub in order: every message with the key of its round (or of
its upstream ``channel:epoch:offset``), and every hole the SDK reports (history the upstream
no longer has) as a gap marker at the place where it happened. The cursor is the upstream
position of every channel: ``{"positions": {channel: [epoch, offset]}}``.
"""

from __future__ import annotations

import asyncio
import collections

import httpx

from wagerwire.client.actions import GapDetected
from wagerwire.client.auth import Auth
from wagerwire.client.client import split_url
from wagerwire.client.connection import WebSocketDriver
from wagerwire.client.errors import AuthError, ForbiddenError, RateLimitedError, SdkError
from wagerwire.client.messages import ClientMessage
from wagerwire.client.protocol import ClientProtocol
from wagerwire.client.rest import RestApi
from wagerwire.client.states import Connected, Disconnected, State
from wagerwire.connectors.model import Gap
from wagerwire.connectors.normalise import native_publication
from wagerwire.connectors.runner import Connector, SourceRefused
from wagerwire.connectors.sources import SourceConfig
from wagerwire.core.channels import is_pattern, pattern_matcher
from wagerwire.core.messages import Position
from wagerwire.core.tokens import encode_positions

__all__ = ["NativeSession", "RelaySink"]

_Item = ClientMessage | GapDetected | SdkError


class RelaySink:
    """The SDK driver's sink: messages and gaps in the order the protocol produced them."""

    def __init__(self, connector: Connector, max_queue: int = 2000) -> None:
        self.connector = connector
        self.items: collections.deque[_Item] = collections.deque()
        self.ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.max_queue = max_queue

    def _put(self, item: _Item) -> None:
        self.items.append(item)
        self.ready.set()
        if len(self.items) >= self.max_queue:
            self._room.clear()

    def deliver(self, message: ClientMessage) -> None:
        self._put(message)

    def gap(self, gap: GapDetected) -> None:
        self._put(gap)

    def failed(self, error: SdkError) -> None:
        self._put(error)

    def state_changed(self, state: State) -> None:
        health = self.connector.health
        if isinstance(state, Connected):
            self.connector.connected()
        elif isinstance(state, Disconnected):
            health.state = "backing_off"
            health.error = str(state.reason)[:300]
            health.reconnects += 1

    async def writable(self) -> None:
        await self._room.wait()

    async def take(self) -> _Item:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item = self.items.popleft()
        if len(self.items) <= self.max_queue // 2:
            self._room.set()
        return item


class NativeSession:
    """Subscribes to ``subscriptions`` (names or patterns) of an upstream wagerwire."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.http_base, self.ws_url = split_url(config.url)

    def _positions(self, connector: Connector) -> dict[str, Position]:
        raw = connector.cursor.get("positions")
        positions: dict[str, Position] = {}
        if isinstance(raw, dict):
            for channel, pos in raw.items():
                if isinstance(pos, list) and len(pos) == 2:
                    positions[str(channel)] = Position(str(pos[0]), int(pos[1]))
        return positions

    async def _start_positions(self, rest: RestApi) -> dict[str, Position]:
        """``start = "earliest"``: offset 0 of every existing channel the subscriptions cover."""
        exact = {c for c in self.config.subscriptions if not is_pattern(c)}
        patterns = [pattern_matcher(c) for c in self.config.subscriptions if is_pattern(c)]
        return {
            info.name: Position(info.epoch, 0)
            for info in await rest.channels()
            if info.epoch and (info.name in exact or any(p.fullmatch(info.name) for p in patterns))
        }

    async def _reconcile(self, connector: Connector, positions: dict[str, Position]) -> None:
        """The cursor may be a checkpoint interval behind after a crash: the relayed
        messages carry their upstream position (``src_pos``), so read it back."""
        for channel, pos in list(positions.items()):
            for epoch, offset in await connector.stored_positions(connector.config.target(channel)):
                if epoch == pos.epoch and offset > pos.offset:
                    positions[channel] = Position(epoch, offset)
                break

    async def run(self, connector: Connector) -> None:
        config = self.config
        auth = Auth(config.credentials)
        async with httpx.AsyncClient(base_url=self.http_base, timeout=10.0) as http:
            rest = RestApi(http, auth)
            positions = self._positions(connector)
            if config.start == "earliest":  # channels never relayed yet: from their start
                try:
                    positions = {**await self._start_positions(rest), **positions}
                except (AuthError, ForbiddenError) as exc:
                    raise _refused(exc) from exc
                except SdkError as exc:
                    raise OSError(str(exc)) from exc
            await self._reconcile(connector, positions)
            heartbeat = float(config.options.get("heartbeat_s", 20.0))
            protocol = ClientProtocol(
                list(config.subscriptions), since=encode_positions(positions) if positions else None,
                wire="ws", backoff=connector.backoff, heartbeat_interval=heartbeat,
                backfill=True, rand=connector.rand,
            )
            sink = RelaySink(connector)
            driver = WebSocketDriver(self.ws_url, protocol, rest=rest, sink=sink, auth=auth,
                                     open_timeout=10.0, page_size=1000)
            task = asyncio.get_running_loop().create_task(driver.run())
            try:
                while True:
                    item = await sink.take()
                    if isinstance(item, SdkError):
                        raise _refused(item)
                    if isinstance(item, GapDetected):
                        await self._gap(connector, item)
                    else:
                        await self._relay(connector, item)
            finally:
                driver.close()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _relay(self, connector: Connector, msg: ClientMessage) -> None:
        pub = native_publication(msg.channel, msg.epoch, msg.offset, msg.ts, msg.data, msg.attrs,
                                 self.config.name)
        positions = connector.cursor.setdefault("positions", {})
        assert isinstance(positions, dict)

        def done() -> None:
            positions[msg.channel] = [msg.epoch, msg.offset]
            connector.advance("positions", positions)
            if msg.source == "backfill":
                connector.health.backfilled += 1

        await connector.submit(pub, done)
        await connector.maybe_checkpoint()

    async def _gap(self, connector: Connector, gap: GapDetected) -> None:
        connector.health.gaps_found += 1
        await connector.flush()  # the marker goes after what came before it
        missing = None if gap.before_offset is None else gap.before_offset - gap.after_offset - 1
        await connector.gap(Gap(
            gap.channel, gap.channel, str(gap.after_offset),
            None if gap.before_offset is None else str(gap.before_offset), missing,
            "history_lost",
        ))
        if gap.before_offset is not None:
            positions = connector.cursor.setdefault("positions", {})
            assert isinstance(positions, dict)
            positions[gap.channel] = [gap.epoch, gap.before_offset - 1]
            connector.advance("positions", positions)


def _refused(error: SdkError) -> SourceRefused:
    if isinstance(error, AuthError):
        return SourceRefused("unauthorized", f"credentials refused upstream: {error}")
    if isinstance(error, ForbiddenError):
        return SourceRefused("forbidden", f"upstream forbids it: {error}")
    if isinstance(error, RateLimitedError):
        return SourceRefused("rate_limited", f"upstream rate limit: {error}")
    return SourceRefused("upstream_error", f"upstream failed the subscription: {error}")
