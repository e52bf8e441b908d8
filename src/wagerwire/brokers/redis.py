"""Redis broker: offsets, history and fan-out shared by every node of a scale-out hub.

The Broker contract (``core/broker.py``) holds across nodes: a message is delivered (on any
node) only after ``persist`` made it durable, offsets have no holes and are the same on every
node, a failed persist reuses its offset.

Why not one script per publish
------------------------------
Centrifugo's Redis engine assigns the offset, appends to the history stream and PUBLISHes in
one Lua script, because Redis *is* its history. Here the durable history is the store
(PostgreSQL), and the contract says "persist, then deliver; a failed persist delivers nothing
and its offset is reused". A script that published first could not take a message back when
the store then refused it, and two nodes appending offsets n and n+1 of one channel to
PostgreSQL in the wrong order would break the store's no-hole rule. So a publish is split at
the one place it must be: offsets are *assigned* under a per-channel writer lease, and the
atomic script runs *after* the store commit: ``commit.lua`` checks the lease (fencing) and
that the offsets follow the channel's top, appends every message to the capped history
stream, records idempotency keys, moves the top and PUBLISHes the batch, all at once.

Writer lease (``acquire.lua``, ``renew.lua``, ``release.lua``)
    One node at a time assigns a channel's offsets. The holder assigns locally with no round
    trip (exactly like ``MemoryBroker``: the offset is taken synchronously, persists run in
    parallel and reach the store in offset order, so the store's group commit stays
    pipelined), commits persisted messages in offset order, one script call per channel at
    a time (batches grow under load), and releases the lease once idle for ``linger_s``.
    Another node that wants the channel marks it *wanted*; the holder then stops assigning,
    drains and releases. Leases expire after ``lease_ttl_s`` unless renewed, so a SIGKILLed
    holder blocks its channels for at most that long. A lease that was not released cleanly
    (``dirty``) makes the next holder *reconcile* with the store first: messages the dead
    holder persisted but never committed are read back from the store and committed (hence
    delivered everywhere) before new offsets are assigned. The store's own per-channel
    advisory lock (``stores/postgres.py``) keeps the no-hole rule even if two nodes ever
    overlapped.

Delivery
    Each node listens on Redis Pub/Sub (``P:p:<channel>``). By default a node listens to
    every channel (``PSUBSCRIBE P:p:*``) so that ``position()`` is current for every channel
    (the hub's resume checks and pattern subscriptions need that); ``subscribe_all=False``
    listens only to channels with local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE
    when the last leaves), which needs the hub to subscribe before it replays (see
    ``subscribe``). The publishing node delivers its own messages when its commit returns (so
    the handler gets the very ``Message`` that was persisted); other nodes deliver the
    PUBLISHed copy. Delivery is per channel in offset order: a message ahead of the next
    expected offset is held while the hole is filled from the Redis stream, or from the store
    when the stream no longer reaches back; only if neither has it is the hole skipped, and
    then the handler's optional ``on_reset(channel)`` is called so subscribers resume.

Outages
    Losing Redis makes the broker not ready (``ready``, ``on_ready_change``): publishes fail
    at once with ``Unavailable``, in-flight ones fail too (their persisted messages are
    reconciled later, so they may still be delivered: a retry with an idempotency key is
    safe). The listener reconnects with exponential backoff; on reconnection it re-seeds
    channels Redis forgot (a restarted Redis) from the store, compares every channel's top
    with what this node delivered and fills the holes before delivering anything newer.

History (``history``)
    The stream holds the newest ``history_size`` messages of each channel, ids = offsets.
    ``history(channel, after, limit)`` returns them, or ``None`` when the stream does not
    reach back to ``after + 1`` (then read the store); ``HistoryStore`` in
    ``wagerwire.node.backends`` wraps a store so the hub's replays read Redis first.

Idempotency
    Within a node as in ``MemoryBroker`` (a retry gets the first publish's very result);
    across nodes a key is claimed in Redis (``claim.lua``) before the offset is assigned, a
    retry on another node waits for the claim to settle and returns the committed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import itertools
import logging
import os
import secrets
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wagerwire.brokers.memory import new_epoch
from wagerwire.core.broker import BrokerHandler, Persist
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.core.store import Store
from wagerwire.errors import Unavailable

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from wagerwire.core.broker import Broker

__all__ = ["RedisBroker", "decode_records", "encode_record"]

log = logging.getLogger("wagerwire.brokers.redis")

CLOSE_TIMEOUT_S = 2.0

T = TypeVar("T")

_REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
_LEN = struct.Struct(">I")
_SCRIPTS = ("acquire", "init", "commit", "release", "renew", "claim", "unclaim")
_COMMIT_MAX = 256  # messages per commit script call
_FILL_PAGE = 500


def encode_record(node: str, message: Message) -> bytes:
    """One message as stored in the stream and PUBLISHed: a JSON header line, then data."""
    attrs = dict(message.attrs) if message.attrs is not None else None
    header = orjson.dumps(
        [node, message.offset, message.epoch, message.ts, attrs, message.idempotency_key]
    )
    return header + b"\n" + message.data


def _decode_record(channel: str, record: bytes) -> tuple[str, Message]:
    cut = record.index(b"\n")
    node, offset, epoch, ts, attrs, key = orjson.loads(record[:cut])
    return node, Message(channel, offset, epoch, ts, record[cut + 1:], attrs, key)


def decode_records(channel: str, payload: bytes) -> list[tuple[str, Message]]:
    """The records of one PUBLISHed batch (each prefixed with its 4-byte length)."""
    out = []
    pos = 0
    end = len(payload)
    while pos < end:
        (size,) = _LEN.unpack_from(payload, pos)
        pos += 4
        out.append(_decode_record(channel, payload[pos:pos + size]))
        pos += size
    return out


def _load_script(name: str) -> str:
    return importlib.resources.files("wagerwire.brokers").joinpath(f"lua/{name}.lua").read_text()


class _Publish:
    """One local publish, from the key claim to its outcome."""

    __slots__ = (
        "abandoned", "claim", "delivered", "done", "message", "persisted", "settled", "ts",
    )

    def __init__(self, ts: int, done: asyncio.Future[None]) -> None:
        self.ts = ts
        self.message: Message | None = None
        self.done = done
        self.settled: asyncio.Future[None] | None = None
        self.claim: tuple[bytes, bytes] | None = None  # (redis key, our pending value)
        self.persisted = False
        self.delivered = False
        self.abandoned = False

    def settle(self, error: BaseException | None) -> None:
        done = self.done
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
                done.exception()
        if self.settled is not None and not self.settled.done():
            self.settled.set_result(None)


class _Channel:
    """Per-channel state: the writer side (lease, in-flight) and the delivery side."""

    __slots__ = (
        "acquiring", "committing", "delivered", "epoch", "fill_to", "filling", "inflight",
        "keys", "lease", "lease_epoch", "must_reconcile", "name", "next_offset", "pending",
        "release_handle", "released", "releasing", "seed", "subscribed", "yielding",
    )

    def __init__(self, name: str, keys: _Keys) -> None:
        self.name = name
        self.keys = keys
        # delivery
        self.epoch: str | None = None
        self.delivered = 0
        self.pending: dict[int, tuple[Message, _Publish | None]] = {}
        self.filling = False
        self.fill_to = 0
        self.subscribed = False
        self.seed: Position | None = None
        # writer
        self.lease = False
        self.lease_epoch = ""
        self.next_offset = 1
        self.inflight: deque[_Publish] = deque()
        self.committing = False
        self.acquiring: asyncio.Future[None] | None = None
        self.released: asyncio.Future[None] | None = None
        self.releasing: asyncio.Future[None] | None = None
        self.release_handle: asyncio.TimerHandle | None = None
        self.yielding = False
        self.must_reconcile = False


class _Keys:
    __slots__ = ("fanout", "lease", "meta", "stream", "wanted")

    def __init__(self, prefix: str, channel: str) -> None:
        tag = f"{prefix}:{{{channel}}}"
        self.meta = f"{tag}:m"
        self.lease = f"{tag}:l"
        self.stream = f"{tag}:s"
        self.wanted = f"{tag}:w"
        self.fanout = f"{prefix}:p:{channel}"


class RedisBroker:
    """The Broker for many nodes over one Redis; see the module docstring.

    Args:
        url: ``redis://host:port/db``.
        store: the durable store of this node (the one ``persist`` writes to); used to seed
            channels Redis does not know, to reconcile after a dead lease holder, and to fill
            holes the stream no longer covers. ``None`` trusts Redis alone.
        prefix: namespace of every Redis key (several hubs can share one Redis).
        idempotency_window_s: as in ``MemoryBroker``, measured on the messages' ``ts``.
        lease_ttl_s: how long a channel's writer lease outlives a silent holder.
        linger_s: an idle holder keeps the lease this long (saves a round trip per publish
            for a steady publisher).
        history_size: messages kept per channel in the Redis stream (approximate, at least).
        subscribe_all: listen to every channel (default) or only to those with local
            subscribers.
        retry_max_s: longest pause between reconnection attempts.
        acquire_timeout_s: a publish waits at most this long for a channel's lease.
    """

    def __init__(
        self,
        url: str,
        *,
        store: Store | None = None,
        prefix: str = "ww",
        idempotency_window_s: float = 300,
        lease_ttl_s: float = 3.0,
        linger_s: float = 0.05,
        history_size: int = 10_000,
        subscribe_all: bool = True,
        retry_max_s: float = 2.0,
        acquire_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if idempotency_window_s < 0 or lease_ttl_s <= 0 or history_size < 1:
            raise ValueError("idempotency_window_s >= 0, lease_ttl_s > 0, history_size >= 1")
        self.url = url
        self.store = store
        self.prefix = prefix
        self.idempotency_window_s = idempotency_window_s
        self.node_id = f"{os.getpid():x}-{secrets.token_hex(4)}"
        self.subscribe_all = subscribe_all
        self.history_size = history_size
        self.on_ready_change: Callable[[bool], None] | None = None
        self._window_ms = int(idempotency_window_s * 1000)
        self._lease_ms = int(lease_ttl_s * 1000)
        self._linger_s = linger_s
        self._retry_max_s = retry_max_s
        self._acquire_timeout_s = acquire_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._handler: BrokerHandler | None = None
        self._closed = False
        self._started = False
        self._channels: dict[str, _Channel] = {}
        self._keys: dict[tuple[str, str], _Publish] = {}
        self._key_order: deque[tuple[int, tuple[str, str], _Publish]] = deque()
        self._tasks: set[asyncio.Future[Any]] = set()  # persists in flight (strong refs)
        self._bg: set[asyncio.Future[Any]] = set()  # our own background work
        self._counter = itertools.count()
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._cmd_ok = False
        self._sub_ok = False
        self._ready = False
        self.resyncs = 0  # completed (re)connections of the listener, for tests and metrics

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected to Redis (commands and fan-out): publishes are accepted."""
        return self._ready

    def _set_ready(self) -> None:
        ready = self._started and not self._closed and self._cmd_ok and self._sub_ok
        if ready != self._ready:
            self._ready = ready
            if ready:
                log.info("Redis broker ready")
            elif not self._closed:
                log.warning("Redis broker NOT ready: Redis is unreachable; retrying")
            if self.on_ready_change is not None:
                try:
                    self.on_ready_change(ready)
                except Exception:
                    log.exception("on_ready_change failed")

    async def start(self, handler: BrokerHandler, positions: Mapping[str, Position]) -> None:
        """Connect, seed Redis from ``positions`` (the store's), start listening."""
        if self._closed:
            raise Unavailable("the broker is closed")
        self._handler = handler
        # A bounded pool that makes callers wait for a free connection rather than fail.
        pool = BlockingConnectionPool.from_url(
            self.url, max_connections=64, timeout=10, retry=Retry(NoBackoff(), 0),
            socket_timeout=5, socket_connect_timeout=2, decode_responses=False,
        )
        self._redis = Redis.from_pool(pool)  # closing the client closes the pool
        for name in _SCRIPTS:
            self._scripts[name] = self._redis.register_script(_load_script(name))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        while True:
            try:
                await self._redis.ping()
                break
            except _REDIS_ERRORS as exc:
                if loop.time() > deadline:
                    await self._redis.aclose()
                    raise Unavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
                await asyncio.sleep(0.2)
        self._cmd_ok = True
        for name, position in positions.items():
            state = self._state(name)
            state.seed = position
            state.epoch = position.epoch
            state.delivered = position.offset
        await self._seed(list(positions.items()))
        self._started = True
        self._listener = loop.create_task(self._listen())
        self._renewer = loop.create_task(self._renew_leases())
        try:
            await asyncio.wait_for(self._listening.wait(), self._connect_timeout_s)
        except TimeoutError as exc:
            await self.close()
            raise Unavailable("cannot subscribe to Redis fan-out") from exc

    async def close(self) -> None:
        """Stop delivering; publishes still in flight fail with ``Unavailable``."""
        if self._closed:
            return
        self._closed = True
        self._set_ready()
        for state in self._channels.values():
            if state.release_handle is not None:
                state.release_handle.cancel()
            if state.inflight:  # persisted but not committed, maybe: the next holder checks
                state.must_reconcile = True
            self._abandon(state, 0, Unavailable("the broker closed before delivery"))
        self._keys.clear()
        self._key_order.clear()
        tasks = [t for t in (self._listener, self._renewer, self._probe) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task blocked inside redis-py may swallow one cancellation (seen as a
            # rare hang at close); it is abandoned after the timeout rather than awaited.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in stuck:
                task.cancel()
                log.warning("redis broker task %s did not stop in time", task.get_name())
        if self._redis is not None:
            held = [s for s in self._channels.values() if s.lease]
            with contextlib.suppress(*_REDIS_ERRORS, redis_errors.RedisError):
                for state in held:
                    await self._scripts["release"](
                        keys=[state.keys.meta, state.keys.lease],
                        args=[self.node_id, 0 if state.must_reconcile else 1],
                    )
            for bg in list(self._bg):
                bg.cancel()
            await self._redis.aclose()

    def position(self, channel: str) -> Position | None:
        """The last position of ``channel`` delivered on this node."""
        state = self._channels.get(channel)
        if state is None or state.epoch is None or state.delivered <= 0:
            return None
        return Position(state.epoch, state.delivered)

    async def subscribe(self, channel: str) -> None:
        """Listen to ``channel`` (when listening per channel) and catch up with Redis.

        On return, this node has delivered everything of ``channel`` up to Redis' top and
        will deliver everything after it. With ``subscribe_all=False`` the hub must call this
        *before* it replays history for a new subscriber (positions of channels nobody here
        listens to are not kept current).
        """
        state = self._state(channel)
        state.subscribed = True
        if not self.subscribe_all and self._pubsub is not None and self._sub_ok:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.subscribe(state.keys.fanout)
        with contextlib.suppress(*_REDIS_ERRORS, Unavailable):
            await self._sync_channels([state])

    async def unsubscribe(self, channel: str) -> None:
        """The last local subscriber left: stop listening (when listening per channel)."""
        state = self._channels.get(channel)
        if state is None:
            return
        state.subscribed = False
        if not self.subscribe_all and self._pubsub is not None and self._sub_ok:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.unsubscribe(state.keys.fanout)

    def _state(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(channel, _Keys(self.prefix, channel))
        return state

    # -- Redis plumbing --------------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        """A command failed for want of Redis: not ready until a probe gets through."""
        if self._closed:
            return
        if self._cmd_ok:
            log.warning("Redis command failed: %s", exc)
        self._cmd_ok = False
        self._set_ready()
        for state in self._channels.values():
            if state.lease:
                state.lease = False
                state.must_reconcile = True
            self._abandon(state, 0, Unavailable(f"lost the connection to Redis: {exc}"))
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        delay = 0.05
        redis = self._redis
        assert redis is not None
        while not self._closed:
            try:
                await redis.ping()
            except _REDIS_ERRORS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self._cmd_ok = True
            self._set_ready()
            return

    def _check_ready(self) -> None:
        if self._closed or self._handler is None:
            raise Unavailable("the broker is closed" if self._closed else "broker not started")
        if not self._ready:
            raise Unavailable(
                "Redis is unreachable: publishing is refused until the broker reconnects "
                "(it retries with backoff); retry later"
            )

    async def _call(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run one script; a connection failure marks Redis down and raises ``Unavailable``."""
        try:
            return await self._scripts[name](keys=keys, args=args)
        except _REDIS_ERRORS as exc:
            self._down(exc)
            raise Unavailable(f"Redis is unreachable: {exc}") from exc

    async def _seed(self, items: list[tuple[str, Position]]) -> None:
        """Create (or raise) Redis positions from the store's (SETNX-like, in batches)."""
        redis = self._redis
        assert redis is not None
        script = self._scripts["init"]
        for start in range(0, len(items), 500):
            async with redis.pipeline(transaction=False) as pipe:
                for name, pos in items[start:start + 500]:
                    keys = _Keys(self.prefix, name)
                    await script(keys=[keys.meta, keys.stream, keys.lease],
                                 args=[pos.epoch, pos.offset], client=pipe)
                await pipe.execute()

    # -- publish ---------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        ts: int,
        attrs: Mapping[str, str] | None,
        idempotency_key: str | None,
        persist: Persist,
    ) -> PublishResult:
        """Assign the next offset under the channel's lease, persist, commit, deliver.

        Raises:
            Unavailable: not started, closed, Redis unreachable, the lease could not be had
                in time, or an earlier publish of the channel failed while this one was in
                flight (its offset is reused).
            Exception: whatever ``persist`` raised; nothing was delivered.
        """
        key = (channel, idempotency_key) if idempotency_key is not None else None
        if key is not None:
            first = await self._first_with_key(key, ts)
            if first is not None:
                return PublishResult(first, duplicate=True)
        self._check_ready()
        loop = asyncio.get_running_loop()
        pub = _Publish(ts, loop.create_future())
        if key is not None:
            self._remember(key, pub)
        state = self._state(channel)
        try:
            if key is not None:
                earlier = await self._claim(state, pub, key[1], ts)
                if earlier is not None:
                    pub.message = earlier
                    pub.delivered = True
                    pub.settle(None)
                    return PublishResult(earlier, duplicate=True)
            deadline = loop.time() + self._acquire_timeout_s
            while not state.lease or state.yielding or state.acquiring is not None:
                await self._acquire(state, deadline)
                self._check_ready()
        except BaseException as exc:
            self._finish(pub, exc if isinstance(exc, Exception) else Unavailable("cancelled"))
            raise
        offset = state.next_offset
        state.next_offset = offset + 1
        message = Message(channel, offset, state.lease_epoch, ts, data, attrs, idempotency_key)
        pub.message = message
        state.inflight.append(pub)
        if state.release_handle is not None:
            state.release_handle.cancel()
            state.release_handle = None
        try:
            task = asyncio.ensure_future(persist(message))
        except Exception as exc:  # persist raised before returning an awaitable
            self._fail(state, pub, exc)
        else:
            self._tasks.add(task)
            task.add_done_callback(partial(self._persisted, state, pub))
        await pub.done
        return PublishResult(message)

    # -- idempotency -----------------------------------------------------------------------

    async def _first_with_key(self, key: tuple[str, str], ts: int) -> Message | None:
        """The first local publish with ``key`` within the window, waiting if in flight."""
        while True:
            first = self._keys.get(key)
            if first is None or ts - first.ts > self._window_ms:
                return None
            if first.delivered:
                return first.message
            if first.settled is None:
                first.settled = asyncio.get_running_loop().create_future()
            await asyncio.shield(first.settled)

    def _remember(self, key: tuple[str, str], pub: _Publish) -> None:
        order = self._key_order
        while order and order[0][0] < pub.ts - self._window_ms:
            _, old_key, old = order.popleft()
            if self._keys.get(old_key) is old:
                del self._keys[old_key]
        self._keys[key] = pub
        order.append((pub.ts, key, pub))

    async def _claim(self, state: _Channel, pub: _Publish, key: str, ts: int) -> Message | None:
        """Claim ``key`` in Redis; returns the committed message of an earlier claim."""
        rkey = f"{self.prefix}:{{{state.name}}}:i:{key}".encode()
        token = str(next(self._counter))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._acquire_timeout_s
        delay = 0.002
        pending_ms = max(self._lease_ms * 4, 10_000)
        while True:
            reply = await self._call(
                "claim", [rkey], [self.node_id, token, ts, self._window_ms, pending_ms]
            )
            if int(reply[0]) == 1:
                pub.claim = (rkey, f"p{ts}|{self.node_id}|{token}".encode())
                return None
            value: bytes = reply[1]
            if value[:1] == b"d":
                cut = value.index(b"|")
                return _decode_record(state.name, value[cut + 1:])[1]
            if loop.time() > deadline:
                raise Unavailable(f"idempotency key {key!r} is held by a publish in flight")
            await asyncio.sleep(delay)  # another node's publish with this key is in flight
            delay = min(delay * 2, 0.05)

    def _unclaim(self, pub: _Publish) -> None:
        claim, pub.claim = pub.claim, None
        if claim is None or self._closed or not self._cmd_ok:
            return
        self._spawn(self._quiet(self._scripts["unclaim"](keys=[claim[0]], args=[claim[1]])))

    def _finish(self, pub: _Publish, error: BaseException) -> None:
        """Fail ``pub``: forget its key (a retry publishes afresh) and tell its waiters."""
        msg = pub.message
        for k, v in list(self._keys.items()) if msg is None else []:
            if v is pub:
                del self._keys[k]
        if msg is not None and msg.idempotency_key is not None:
            k2 = (msg.channel, msg.idempotency_key)
            if self._keys.get(k2) is pub:
                del self._keys[k2]
        self._unclaim(pub)
        pub.settle(error)

    # -- the writer lease ------------------------------------------------------------------

    async def _acquire(self, state: _Channel, deadline: float) -> None:
        """Wait until this node holds ``state``'s lease (one attempt shared by all waiters)."""
        if state.acquiring is None:
            future = state.acquiring = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._acquire_loop(state, deadline))

            def done(t: asyncio.Future[None]) -> None:
                state.acquiring = None
                error = Unavailable("lease acquisition cancelled") if t.cancelled() \
                    else t.exception()
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
                    future.exception()  # retrieved: the waiters may all be gone

            self._bg.add(task)
            task.add_done_callback(self._bg.discard)
            task.add_done_callback(done)
        await asyncio.shield(state.acquiring)

    async def _acquire_loop(self, state: _Channel, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        keys = state.keys
        while state.lease or state.releasing is not None:
            if state.releasing is not None:  # a release is on its way to Redis
                await asyncio.shield(state.releasing)
                continue
            # Yielding: let the in-flight publishes drain, then the lease is released.
            if state.released is None:
                state.released = loop.create_future()
            await asyncio.shield(state.released)
        delay = 0.001
        while True:
            if self._closed:
                raise Unavailable("the broker is closed")
            reply = await self._call(
                "acquire", [keys.meta, keys.lease, keys.wanted, keys.stream],
                [self.node_id, self._lease_ms, "", 250],
            )
            status = int(reply[0])
            if status == 0:
                if loop.time() > deadline:
                    raise Unavailable(
                        f"channel {state.name} is being written by another node; try again"
                    )
                await asyncio.sleep(min(delay, max(0.001, int(reply[1]) / 1000)))
                delay = min(delay * 2, 0.02)
                continue
            if status == 2:
                epoch, top = await self._initial_position(state)
                await self._call(
                    "init", [keys.meta, keys.stream, keys.lease], [epoch, top]
                )
                continue
            epoch = reply[1].decode()
            top = int(reply[2])
            dirty = int(reply[3]) or state.must_reconcile
            if dirty and self.store is not None:
                top = await self._reconcile(state, epoch, top)
            state.lease = True
            state.lease_epoch = epoch
            state.next_offset = top + 1
            state.yielding = False
            state.must_reconcile = False
            return

    async def _initial_position(self, state: _Channel) -> tuple[str, int]:
        """Where a channel Redis does not know starts: the store's position, else a seed."""
        if self.store is not None:
            info = await self.store.channel_info(state.name)
            if info is not None:
                return info.epoch, info.last_offset
            return new_epoch(), 0
        if state.seed is not None:
            return state.seed.epoch, state.seed.offset
        return new_epoch(), 0

    async def _reconcile(self, state: _Channel, epoch: str, top: int) -> int:
        """Commit what a dead holder persisted but never committed; returns the new top."""
        assert self.store is not None
        info = await self.store.channel_info(state.name)
        if info is None or info.epoch != epoch or info.last_offset <= top:
            return top
        log.warning("reconciling %s: store at %d, Redis at %d", state.name,
                    info.last_offset, top)
        after = top
        while after < info.last_offset:
            page = await self.store.read(state.name, after, _COMMIT_MAX)
            page = [m for m in page if m.offset <= info.last_offset]
            if not page or page[0].offset != after + 1:
                # Retention removed them: move the top past them; nodes fill or reset.
                await self._call("init", [state.keys.meta, state.keys.stream,
                                          state.keys.lease], [epoch, info.last_offset])
                return info.last_offset
            reply = await self._commit_call(state, epoch, page)
            if int(reply[0]) != 1:
                raise Unavailable(f"reconciling {state.name} failed ({reply[0]})")
            for message in page:
                self._offer(state, message, None)
            after = page[-1].offset
        return after

    async def _renew_leases(self) -> None:
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            held = [s for s in self._channels.values() if s.lease]
            if not held or not self._cmd_ok:
                continue
            try:
                flags = await self._scripts["renew"](
                    keys=[s.keys.lease for s in held], args=[self.node_id, self._lease_ms]
                )
            except _REDIS_ERRORS as exc:
                self._down(exc)
                continue
            except redis_errors.RedisError:
                log.exception("renewing leases failed")
                continue
            for state, flag in zip(held, flags, strict=True):
                if not int(flag) and state.lease:
                    log.warning("lost the writer lease of %s", state.name)
                    state.lease = False
                    state.must_reconcile = True

    def _drained(self, state: _Channel) -> None:
        """No publish of ``state`` is in flight: release now if wanted, else after linger."""
        if not state.lease or state.inflight or state.committing:
            return
        if state.yielding or self._linger_s <= 0:
            self._release(state)
        elif state.release_handle is None:
            state.release_handle = asyncio.get_running_loop().call_later(
                self._linger_s, self._release, state
            )

    def _release(self, state: _Channel) -> None:
        state.release_handle = None
        if not state.lease or state.inflight or state.committing:
            return
        state.lease = False
        state.yielding = False
        released, state.released = state.released, None
        releasing = state.releasing = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                if self._cmd_ok:
                    await self._scripts["release"](
                        keys=[state.keys.meta, state.keys.lease],
                        args=[self.node_id, 0 if state.must_reconcile else 1],
                    )
            except _REDIS_ERRORS as exc:
                self._down(exc)
            except redis_errors.RedisError:
                log.exception("releasing the lease of %s failed", state.name)
            finally:
                state.releasing = None
                releasing.set_result(None)
                if released is not None and not released.done():
                    released.set_result(None)

        self._spawn(run())

    # -- persist → commit → deliver --------------------------------------------------------

    def _persisted(self, state: _Channel, pub: _Publish, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        error = Unavailable("persist was cancelled") if task.cancelled() else task.exception()
        if self._closed or pub.abandoned:
            return
        if error is None:
            pub.persisted = True
            self._maybe_commit(state)
        else:
            self._fail(state, pub, error)

    def _maybe_commit(self, state: _Channel) -> None:
        if state.committing or not state.inflight or not state.inflight[0].persisted:
            return
        batch: list[_Publish] = []
        for pub in state.inflight:
            if not pub.persisted or len(batch) >= _COMMIT_MAX:
                break
            batch.append(pub)
        state.committing = True
        self._spawn(self._commit(state, batch))

    async def _commit_call(self, state: _Channel, epoch: str, messages: list[Message]) -> Any:
        keys: list[Any] = [state.keys.meta, state.keys.lease, state.keys.stream,
                           state.keys.wanted]
        window = self._window_ms + 60_000
        records = []
        per_message: list[Any] = []
        for m in messages:
            record = encode_record(self.node_id, m)
            records.append(_LEN.pack(len(record)) + record)
            per_message.append(record)
            if m.idempotency_key is not None:
                keys.append(f"{self.prefix}:{{{m.channel}}}:i:{m.idempotency_key}")
                per_message += [b"d%d|" % m.ts + record, window]
            else:
                per_message += ["", 0]
        args: list[Any] = [self.node_id, epoch, self.history_size, state.keys.fanout,
                           b"".join(records), messages[0].offset, len(messages), *per_message]
        return await self._call("commit", keys, args)

    async def _commit(self, state: _Channel, batch: list[_Publish]) -> None:
        messages = [p.message for p in batch if p.message is not None]
        try:
            reply = await self._commit_call(state, state.lease_epoch, messages)
        except Unavailable as exc:  # Redis went away: _down() abandoned everything
            state.committing = False
            self._abandon(state, 0, exc)
            return
        except redis_errors.RedisError as exc:
            state.committing = False
            log.exception("commit script failed on %s", state.name)
            state.lease = False
            state.must_reconcile = True
            self._abandon(state, 0, Unavailable(f"commit failed: {exc}"))
            return
        state.committing = False
        if int(reply[0]) != 1:
            reason = {-1: "lost its writer lease", -2: "changed epoch",
                      -3: "moved on"}.get(int(reply[0]), "refused the commit")
            log.warning("commit on %s refused: the channel %s", state.name, reason)
            state.lease = False
            state.must_reconcile = True
            self._abandon(state, 0, Unavailable(
                f"publish on {state.name} not committed: the channel {reason}; retry"
            ))
            return
        if int(reply[1]):
            state.yielding = True
        for pub in batch:
            if state.inflight and state.inflight[0] is pub:
                state.inflight.popleft()
            pub.claim = None
            assert pub.message is not None
            self._offer(state, pub.message, pub)
        self._maybe_commit(state)
        self._drained(state)

    def _fail(self, state: _Channel, pub: _Publish, error: BaseException) -> None:
        """Fail ``pub``, abandon the later in-flight publishes, reuse their offsets."""
        assert pub.message is not None
        inflight = state.inflight
        index = inflight.index(pub)
        later = [inflight.pop() for _ in range(len(inflight) - index - 1)]
        inflight.pop()
        state.next_offset = pub.message.offset
        if self.store is not None:
            # The store may hold the offset after all (an ambiguous failure, or another node
            # got there first): drain, then re-take the lease and reconcile before reusing.
            state.must_reconcile = True
            state.yielding = True
        self._finish(pub, error)
        for other in reversed(later):
            other.abandoned = True
            assert other.message is not None
            abandoned = Unavailable(
                f"publish #{other.message.offset} on {other.message.channel} abandoned: "
                f"#{pub.message.offset} failed to persist and its offset is reused"
            )
            abandoned.__cause__ = error
            self._finish(other, abandoned)
        self._drained(state)

    def _abandon(self, state: _Channel, _from: int, error: BaseException) -> None:
        """Fail every in-flight publish of ``state`` (the lease or Redis was lost)."""
        pubs = list(state.inflight)
        state.inflight.clear()
        for pub in pubs:
            pub.abandoned = True
            self._finish(pub, error)
        released, state.released = state.released, None
        if released is not None and not released.done():
            released.set_result(None)

    # -- delivery, in offset order per channel ---------------------------------------------

    def _offer(self, state: _Channel, message: Message, pub: _Publish | None) -> None:
        """Deliver ``message`` in order: now, after a hole is filled, or never (seen)."""
        if state.epoch != message.epoch:
            known = state.epoch is not None
            state.epoch = message.epoch
            state.pending.clear()
            # An unknown channel starts here; a new epoch starts at 1 (fill what is missing).
            state.delivered = 0 if known else message.offset - 1
        offset = message.offset
        if offset <= state.delivered:
            if pub is not None:  # another copy got there first (a fill)
                pub.delivered = True
                pub.settle(None)
            return
        if offset == state.delivered + 1 and not state.filling:
            self._deliver(state, message, pub)
            if state.pending:
                self._drain(state)
            return
        state.pending[offset] = (message, pub)
        self._start_fill(state, offset - 1)

    def _deliver(self, state: _Channel, message: Message, pub: _Publish | None) -> None:
        state.delivered = message.offset
        handler = self._handler
        if handler is not None and not self._closed:
            try:
                handler.on_message(message)
            except Exception:  # a handler bug must not stall the channel
                log.exception("handler failed on %s #%d", message.channel, message.offset)
        if pub is not None:
            pub.delivered = True
            pub.settle(None)

    def _drain(self, state: _Channel) -> None:
        pending = state.pending
        while pending:
            nxt = pending.pop(state.delivered + 1, None)
            if nxt is None:
                for stale in [o for o in pending if o <= state.delivered]:
                    _, pub = pending.pop(stale)
                    if pub is not None:
                        pub.delivered = True
                        pub.settle(None)
                if pending:
                    self._start_fill(state, min(pending) - 1)
                return
            self._deliver(state, *nxt)

    def _start_fill(self, state: _Channel, upto: int) -> None:
        state.fill_to = max(state.fill_to, upto)
        if not state.filling and state.fill_to > state.delivered:
            state.filling = True
            self._spawn(self._fill(state))

    async def _fill(self, state: _Channel) -> None:
        """Fetch the missing offsets (stream, then store) and deliver them in order."""
        delay = 0.05
        try:
            while not self._closed and state.delivered < state.fill_to:
                epoch = state.epoch
                want = min(state.fill_to - state.delivered, _FILL_PAGE)
                try:
                    page = await self._fetch(state.name, epoch, state.delivered, want)
                except (*_REDIS_ERRORS, Unavailable) as exc:
                    log.warning("filling %s failed (%s); retrying", state.name, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                if epoch != state.epoch:
                    continue
                if not page:
                    self._skip(state, state.fill_to)
                    break
                for message in page:
                    if message.offset == state.delivered + 1:
                        held = state.pending.pop(message.offset, None)
                        if held is not None:
                            self._deliver(state, held[0], held[1])
                        else:
                            self._deliver(state, message, None)
        finally:
            state.filling = False
        if state.pending and not self._closed:
            self._drain(state)

    def _skip(self, state: _Channel, upto: int) -> None:
        """History no longer has offsets up to ``upto``: skip them and make subscribers
        resume (the hub's ``on_reset`` when it has one)."""
        log.error("%s: offsets %d-%d are in neither Redis nor the store; subscribers must "
                  "resume", state.name, state.delivered + 1, upto)
        state.delivered = upto
        reset = getattr(self._handler, "on_reset", None)
        if callable(reset):
            try:
                reset(state.name)
            except Exception:
                log.exception("on_reset failed for %s", state.name)

    async def _fetch(
        self, channel: str, epoch: str | None, after: int, limit: int
    ) -> list[Message]:
        """Contiguous messages after ``after``: from the stream, else from the store."""
        page = await self.history(channel, after, limit)
        if page is not None and page and page[0].epoch == epoch:
            return page
        if self.store is not None:
            stored = await self.store.read(channel, after, limit)
            if stored and stored[0].offset == after + 1 and stored[0].epoch == epoch:
                return stored
        return []

    async def history(self, channel: str, after: int, limit: int) -> list[Message] | None:
        """Committed messages with offset > ``after`` from the Redis stream, ascending.

        ``None`` when the stream cannot answer for the whole range (it no longer reaches
        back to ``after + 1``, or Redis lost the channel): read the store instead.
        """
        redis = self._redis
        if redis is None or limit <= 0:
            return [] if limit <= 0 else None
        keys = _Keys(self.prefix, channel)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.meta, ["epoch", "top"])
            pipe.xrange(keys.stream, min=str(after + 1), max="+", count=limit)
            (epoch, top), entries = await pipe.execute()
        if epoch is None:
            return None
        if not entries:
            return [] if int(top) <= after else None
        out = []
        expected = after + 1
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-", 1)[0])
            if offset != expected:
                return None
            out.append(_decode_record(channel, fields[b"m"])[1])
            expected += 1
        return out

    # -- the listener ----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Receive the fan-out; reconnect with backoff; resync after every (re)connection."""
        delay = 0.05
        redis = self._redis
        assert redis is not None
        while not self._closed:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                if self.subscribe_all:
                    await pubsub.psubscribe(f"{self.prefix}:p:*")
                else:
                    names = [s.keys.fanout for s in self._channels.values() if s.subscribed]
                    await pubsub.subscribe(f"{self.prefix}:p:", *names)
                self._pubsub = pubsub
                # Drain the subscribe confirmations so the subscription is live.
                await pubsub.get_message(timeout=0.5)
                self._sub_ok = True
                self._cmd_ok = True
                await self._resync()
                self.resyncs += 1
                self._set_ready()
                self._listening.set()
                delay = 0.05
                skip = len(f"{self.prefix}:p:")
                while not self._closed:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg["type"] not in ("message", "pmessage"):
                        continue
                    channel = msg["channel"][skip:].decode()
                    self._on_fanout(channel, msg["data"])
            except asyncio.CancelledError:
                raise
            except (*_REDIS_ERRORS, Unavailable) as exc:
                if self._sub_ok:
                    log.warning("Redis fan-out connection lost: %s", exc)
                self._sub_ok = False
                self._set_ready()
                self._down(exc)
            except Exception:
                log.exception("Redis listener failed")
                self._sub_ok = False
                self._set_ready()
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if not self._closed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)

    def _on_fanout(self, channel: str, payload: bytes) -> None:
        try:
            records = decode_records(channel, payload)
        except (ValueError, struct.error, orjson.JSONDecodeError):
            log.exception("undecodable fan-out on %s", channel)
            return
        state = self._state(channel)
        for node, message in records:
            if node != self.node_id:  # our own commits are delivered when they return
                self._offer(state, message, None)

    async def _resync(self) -> None:
        """After (re)connecting: re-seed what Redis forgot, then fill every hole."""
        states = [s for s in self._channels.values()
                  if s.epoch is not None and (self.subscribe_all or s.subscribed)]
        await self._sync_channels(states)

    async def _sync_channels(self, states: list[_Channel]) -> None:
        redis = self._redis
        assert redis is not None
        for start in range(0, len(states), 500):
            chunk = states[start:start + 500]
            async with redis.pipeline(transaction=False) as pipe:
                for state in chunk:
                    pipe.hmget(state.keys.meta, ["epoch", "top"])
                metas = await pipe.execute()
            missing = [s for s, (epoch, _) in zip(chunk, metas, strict=True) if epoch is None]
            if missing and self.store is not None:
                positions = await self.store.positions()
                seeds = [(s.name, positions[s.name]) for s in missing if s.name in positions]
                await self._seed(seeds)
                for name, pos in seeds:
                    self._sync_one(self._channels[name], pos.epoch, pos.offset)
            for state, (epoch, top) in zip(chunk, metas, strict=True):
                if epoch is not None:
                    self._sync_one(state, epoch.decode(), int(top))

    def _sync_one(self, state: _Channel, epoch: str, top: int) -> None:
        if state.epoch is None:
            state.epoch = epoch
            state.delivered = top
            return
        if state.epoch != epoch:
            state.epoch = epoch
            state.delivered = 0
            state.pending.clear()
        if top > state.delivered:
            self._start_fill(state, top)

    # -- helpers ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    @staticmethod
    async def _quiet(coro: Awaitable[T]) -> T | None:
        try:
            return await coro
        except (*_REDIS_ERRORS, redis_errors.RedisError):
            return None


if TYPE_CHECKING:
    _conforms: Broker = RedisBroker("redis://")
