"""The Redis broker's writer: key claims, the per-channel writer lease, persist and commit.

See ``brokers/redis.py`` for the design. In order, a publish here: claims its idempotency key
across nodes (``claim.lua``), waits for the channel's writer lease (``acquire.lua``, shared by
the publishes that wait together; a dirty lease is reconciled with the store first), takes
the next offset with no round trip, persists as its own task, and once it and every earlier
publish of the channel are persisted, is committed in a batch (``commit.lua``) and handed to
``redis_delivery``; the commits of all channels ready in one event-loop turn share one
pipelined round trip. The lease is renewed in the background (``renew.lua``) and released
(``release.lua``) once the channel is idle for ``linger_s`` or another node wants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from functools import partial
from typing import Any, Unpack

from redis import exceptions as redis_errors

from wagerwire.brokers.inflight import (
    IDEMPOTENCY_WINDOW_BYTES,
    IdempotencyWindow,
    Publish,
    abandoned_error,
    cut_from,
    publish_key,
    start_persist,
)
from wagerwire.brokers.memory import new_epoch
from wagerwire.brokers.redis_delivery import OrderedDelivery
from wagerwire.brokers.redis_link import REDIS_ERRORS, RedisLink
from wagerwire.brokers.redis_records import (
    ChannelKeys,
    decode_record,
    encode_batch,
)
from wagerwire.core.broker import PublishArgs
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.core.store import Store
from wagerwire.errors import Unavailable

__all__ = ["LeaseWriter"]

log = logging.getLogger("wagerwire.brokers.redis")

COMMIT_MAX = 256  # messages per commit script call


class _RedisPublish(Publish):
    """A publish that may hold a claim on its idempotency key in Redis."""

    __slots__ = ("claim",)

    def __init__(self, ts: int, done: asyncio.Future[None], key: tuple[str, str] | None
                 ) -> None:
        super().__init__(ts, done, key)
        self.claim: tuple[bytes, bytes] | None = None  # (redis key, our pending value)


class _Writing:
    """The writer side of one channel: its lease and its publishes in flight."""

    __slots__ = (
        "acquiring", "checked", "committing", "inflight", "keys", "lease", "lease_epoch",
        "must_reconcile", "name", "next_offset", "release_handle", "released", "releasing",
        "yielding",
    )

    def __init__(self, name: str, keys: ChannelKeys) -> None:
        self.name = name
        self.keys = keys
        self.lease = False
        self.lease_epoch = ""
        self.next_offset = 1
        self.inflight: deque[_RedisPublish] = deque()
        self.committing = False
        self.acquiring: asyncio.Future[None] | None = None
        self.released: asyncio.Future[None] | None = None
        self.releasing: asyncio.Future[None] | None = None
        self.release_handle: asyncio.TimerHandle | None = None
        self.yielding = False
        self.must_reconcile = False
        self.checked = -1  # the link generation this channel was last reconciled in


class LeaseWriter:
    """Publishes of this node, under per-channel writer leases."""

    def __init__(
        self, link: RedisLink, delivery: OrderedDelivery, store: Store | None, *,
        window_ms: int, lease_ms: int, linger_s: float, history_size: int,
        acquire_timeout_s: float, window_bytes: int = IDEMPOTENCY_WINDOW_BYTES,
    ) -> None:
        self.link = link
        self.delivery = delivery
        self.store = store
        self.history_size = history_size
        self.seeds: dict[str, Position] = {}  # the store's positions at start
        self._window = IdempotencyWindow(window_ms, window_bytes)
        self._lease_ms = lease_ms
        self._linger_s = linger_s
        self._acquire_timeout_s = acquire_timeout_s
        self._channels: dict[str, _Writing] = {}
        self._tasks: set[asyncio.Future[Any]] = set()  # persists in flight (strong refs)
        self._counter = itertools.count()
        self._to_commit: list[_Writing] = []  # channels to commit this event-loop turn
        self._flush_scheduled = False
        self.commit_rounds = 0  # round trips that carried commits (one per loop turn)
        self.renewer: asyncio.Task[None] | None = None

    def _state(self, channel: str) -> _Writing:
        state = self._channels.get(channel)
        if state is None:
            keys = ChannelKeys(self.link.prefix, channel)
            state = self._channels[channel] = _Writing(channel, keys)
        return state

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start renewing the leases this node holds."""
        self.renewer = asyncio.get_running_loop().create_task(self._renew_leases())

    def stop(self) -> None:
        """The broker closes: fail every publish in flight (the next holder reconciles)."""
        for state in self._channels.values():
            if state.release_handle is not None:
                state.release_handle.cancel()
            if state.inflight:  # persisted but not committed, maybe: the next holder checks
                state.must_reconcile = True
            self._abandon(state, Unavailable("the broker closed before delivery"))
        self._window.clear()

    async def release_all(self) -> None:
        """Give back every lease still held (the broker closes)."""
        held = [s for s in self._channels.values() if s.lease]
        with contextlib.suppress(*REDIS_ERRORS, redis_errors.RedisError):
            for state in held:
                await self.link.scripts["release"](
                    keys=[state.keys.meta, state.keys.lease],
                    args=[self.link.node_id, 0 if state.must_reconcile else 1],
                )

    def lost_redis(self, exc: BaseException) -> None:
        """Redis is unreachable: the leases are lost, the publishes in flight fail."""
        for state in self._channels.values():
            if state.lease:
                state.lease = False
                state.must_reconcile = True
            self._abandon(state, Unavailable(f"lost the connection to Redis: {exc}"))

    # -- publish ---------------------------------------------------------------------------

    async def publish(self, channel: str, data: bytes, **args: Unpack[PublishArgs]
                      ) -> PublishResult:
        """``RedisBroker.publish``: claim, take the lease and an offset, persist, commit."""
        ts, key = args["ts"], publish_key(channel, args)
        if key is not None:  # (no coroutine to await for the usual publish without a key)
            duplicate = await self._window.duplicate(key, ts)
            if duplicate is not None:
                return duplicate
        self.link.check_ready()
        loop = asyncio.get_running_loop()
        pub = _RedisPublish(ts, loop.create_future(), key)
        if key is not None:
            self._window.remember(pub, len(data))
        state = self._state(channel)
        try:
            if key is not None:
                earlier = await self._claim(state, pub, key[1], ts)
                if earlier is not None:
                    pub.message = earlier
                    pub.delivered_now()
                    return PublishResult(earlier, duplicate=True)
            deadline = loop.time() + self._acquire_timeout_s
            while not state.lease or state.yielding or state.acquiring is not None:
                await self._acquire(state, deadline)
                self.link.check_ready()
        except BaseException as exc:
            self._finish(pub, exc if isinstance(exc, Exception) else Unavailable("cancelled"))
            raise
        offset = state.next_offset
        state.next_offset = offset + 1
        message = Message(
            channel, offset, state.lease_epoch, ts, data, args["attrs"], args["idempotency_key"]
        )
        pub.message = message
        state.inflight.append(pub)
        if state.release_handle is not None:
            state.release_handle.cancel()
            state.release_handle = None
        start_persist(args["persist"], message, self._tasks, partial(self._persisted, state, pub))
        await pub.done
        return PublishResult(message)

    # -- idempotency across nodes ----------------------------------------------------------

    async def _claim(self, state: _Writing, pub: _RedisPublish, key: str, ts: int
                     ) -> Message | None:
        """Claim ``key`` in Redis; returns the committed message of an earlier claim."""
        link = self.link
        rkey = state.keys.idempotency(key).encode()
        token = str(next(self._counter))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._acquire_timeout_s
        delay = 0.002
        pending_ms = max(self._lease_ms * 4, 10_000)
        while True:
            reply = await link.call(
                "claim", [rkey], [link.node_id, token, ts, self._window.window_ms, pending_ms]
            )
            if int(reply[0]) == 1:
                pub.claim = (rkey, f"p{ts}|{link.node_id}|{token}".encode())
                return None
            value: bytes = reply[1]
            if value[:1] == b"d":
                cut = value.index(b"|")
                return decode_record(state.name, value[cut + 1:])[1]
            if loop.time() > deadline:
                raise Unavailable(f"idempotency key {key!r} is held by a publish in flight")
            await asyncio.sleep(delay)  # another node's publish with this key is in flight
            delay = min(delay * 2, 0.05)

    def _unclaim(self, pub: _RedisPublish) -> None:
        claim, pub.claim = pub.claim, None
        link = self.link
        if claim is None or link.closed or not link.cmd_ok:
            return
        link.spawn(link.quiet(link.scripts["unclaim"](keys=[claim[0]], args=[claim[1]])))

    def _finish(self, pub: _RedisPublish, error: BaseException) -> None:
        """Fail ``pub``: forget its key (a retry publishes afresh) and tell its waiters."""
        self._window.forget(pub)
        self._unclaim(pub)
        pub.settle(error)

    # -- the writer lease ------------------------------------------------------------------

    async def _acquire(self, state: _Writing, deadline: float) -> None:
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

            self.link.bg.add(task)
            task.add_done_callback(self.link.bg.discard)
            task.add_done_callback(done)
        await asyncio.shield(state.acquiring)

    async def _acquire_loop(self, state: _Writing, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        link = self.link
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
            if link.closed:
                raise Unavailable("the broker is closed")
            reply = await link.call(
                "acquire", [keys.meta, keys.lease, keys.wanted, keys.stream],
                [link.node_id, self._lease_ms, "", 250],
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
                await link.call("init", [keys.meta, keys.stream, keys.lease], [epoch, top])
                continue
            epoch = reply[1].decode()
            top = int(reply[2])
            # Also the first lease of a channel since this node (re)connected: a failover
            # may have promoted a replica that missed the last commits (and the dirty flag).
            dirty = int(reply[3]) or state.must_reconcile or state.checked != link.generation
            if dirty and self.store is not None:
                top = await self._reconcile(state, epoch, top)
            state.lease = True
            state.lease_epoch = epoch
            state.next_offset = top + 1
            state.yielding = False
            state.must_reconcile = False
            state.checked = link.generation
            return

    async def _initial_position(self, state: _Writing) -> tuple[str, int]:
        """Where a channel Redis does not know starts: the store's position, else a seed."""
        if self.store is not None:
            info = await self.store.channel_info(state.name)
            if info is not None:
                return info.epoch, info.last_offset
            return new_epoch(), 0
        seed = self.seeds.get(state.name)
        if seed is not None:
            return seed.epoch, seed.offset
        return new_epoch(), 0

    async def _reconcile(self, state: _Writing, epoch: str, top: int) -> int:
        """Commit what a dead holder persisted but never committed; returns the new top."""
        assert self.store is not None
        info = await self.store.channel_info(state.name)
        if info is None or info.epoch != epoch or info.last_offset <= top:
            return top
        log.warning("reconciling %s: store at %d, Redis at %d", state.name,
                    info.last_offset, top)
        after = top
        keys = state.keys
        while after < info.last_offset:
            page = await self.store.read(state.name, after, COMMIT_MAX)
            page = [m for m in page if m.offset <= info.last_offset]
            if not page or page[0].offset != after + 1:
                # Retention removed them: move the top past them; nodes fill or reset.
                await self.link.call("init", [keys.meta, keys.stream, keys.lease],
                                     [epoch, info.last_offset])
                return info.last_offset
            reply = await self._commit_call(state, epoch, page)
            if int(reply[0]) != 1:
                raise Unavailable(f"reconciling {state.name} failed ({reply[0]})")
            for message in page:
                self.delivery.offer(state.name, message, None)
            after = page[-1].offset
        return after

    async def _renew_leases(self) -> None:
        link = self.link
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            held = [s for s in self._channels.values() if s.lease]
            if not held or not link.cmd_ok:
                continue
            try:
                flags = await link.scripts["renew"](
                    keys=[s.keys.lease for s in held], args=[link.node_id, self._lease_ms]
                )
            except REDIS_ERRORS as exc:
                link.down(exc)
                continue
            except redis_errors.RedisError:
                log.exception("renewing leases failed")
                continue
            for state, flag in zip(held, flags, strict=True):
                if not int(flag) and state.lease:
                    log.warning("lost the writer lease of %s", state.name)
                    state.lease = False
                    state.must_reconcile = True

    def _drained(self, state: _Writing) -> None:
        """No publish of ``state`` is in flight: release now if wanted, else after linger."""
        if not state.lease or state.inflight or state.committing:
            return
        if state.yielding or self._linger_s <= 0:
            self._release(state)
        elif state.release_handle is None:
            state.release_handle = asyncio.get_running_loop().call_later(
                self._linger_s, self._release, state
            )

    def _release(self, state: _Writing) -> None:
        state.release_handle = None
        if not state.lease or state.inflight or state.committing:
            return
        state.lease = False
        state.yielding = False
        released, state.released = state.released, None
        releasing = state.releasing = asyncio.get_running_loop().create_future()
        link = self.link

        async def run() -> None:
            try:
                if link.cmd_ok:
                    await link.scripts["release"](
                        keys=[state.keys.meta, state.keys.lease],
                        args=[link.node_id, 0 if state.must_reconcile else 1],
                    )
            except REDIS_ERRORS as exc:
                link.down(exc)
            except redis_errors.RedisError:
                log.exception("releasing the lease of %s failed", state.name)
            finally:
                state.releasing = None
                releasing.set_result(None)
                if released is not None and not released.done():
                    released.set_result(None)

        link.spawn(run())

    # -- persist → commit → deliver --------------------------------------------------------

    def _persisted(self, state: _Writing, pub: _RedisPublish, error: BaseException | None
                   ) -> None:
        if self.link.closed or pub.abandoned:
            return
        if error is None:
            pub.persisted = True
            self._maybe_commit(state)
        else:
            self._fail(state, pub, error)

    def _maybe_commit(self, state: _Writing) -> None:
        """Queue ``state``'s persisted head for the commit of this event-loop turn."""
        if state.committing or not state.inflight or not state.inflight[0].persisted:
            return
        state.committing = True
        self._to_commit.append(state)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_commits)

    def _flush_commits(self) -> None:
        """Commit every channel queued this turn: one pipelined round trip for all."""
        self._flush_scheduled = False
        states, self._to_commit = self._to_commit, []
        work: list[tuple[_Writing, list[_RedisPublish]]] = []
        for state in states:
            batch: list[_RedisPublish] = []
            for pub in state.inflight:
                if not pub.persisted or len(batch) >= COMMIT_MAX:
                    break
                batch.append(pub)
            if batch:
                work.append((state, batch))
            else:  # abandoned meanwhile
                state.committing = False
        if work:
            self.link.spawn(self._commit_many(work))

    def _commit_args(self, state: _Writing, epoch: str, messages: list[Message]
                     ) -> tuple[list[Any], list[Any]]:
        """One ``commit.lua`` call: the records go once, in the batch payload the script
        PUBLISHes and splits for the stream; only keyed messages add arguments."""
        node = self.link.node_id
        keys: list[Any] = [state.keys.meta, state.keys.lease, state.keys.stream,
                           state.keys.wanted]
        window = self._window.window_ms + 60_000
        keyed: list[Any] = []
        for index, m in enumerate(messages):
            if m.idempotency_key is not None:
                keys.append(state.keys.idempotency(m.idempotency_key))
                keyed += (index, b"d%d|" % m.ts, window)
        args: list[Any] = [node, epoch, self.history_size, state.keys.fanout,
                           encode_batch(node, messages), messages[0].offset, len(messages),
                           *keyed]
        return keys, args

    async def _commit_call(self, state: _Writing, epoch: str, messages: list[Message]) -> Any:
        keys, args = self._commit_args(state, epoch, messages)
        return await self.link.call("commit", keys, args)

    async def _commit_many(self, work: list[tuple[_Writing, list[_RedisPublish]]]) -> None:
        self.commit_rounds += 1
        calls = [
            self._commit_args(state, state.lease_epoch,
                              [p.message for p in batch if p.message is not None])
            for state, batch in work
        ]
        try:
            replies = await self.link.call_many("commit", calls)
        except Unavailable as exc:  # Redis went away: lost_redis() abandoned everything
            for state, _ in work:
                state.committing = False
                self._abandon(state, exc)
            return
        except redis_errors.RedisError as exc:
            replies = [exc] * len(work)
        for (state, batch), reply in zip(work, replies, strict=True):
            self._committed(state, batch, reply)

    def _committed(self, state: _Writing, batch: list[_RedisPublish], reply: Any) -> None:
        state.committing = False
        if isinstance(reply, redis_errors.RedisError):
            log.error("commit script failed on %s: %s", state.name, reply)
            state.lease = False
            state.must_reconcile = True
            self._abandon(state, Unavailable(f"commit failed: {reply}"))
            return
        if int(reply[0]) != 1:
            reason = {-1: "lost its writer lease", -2: "changed epoch",
                      -3: "moved on"}.get(int(reply[0]), "refused the commit")
            log.warning("commit on %s refused: the channel %s", state.name, reason)
            state.lease = False
            state.must_reconcile = True
            self._abandon(state, Unavailable(
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
            self.delivery.offer(state.name, pub.message, pub)
        self._maybe_commit(state)
        self._drained(state)

    def _fail(self, state: _Writing, pub: _RedisPublish, error: BaseException) -> None:
        """Fail ``pub``, abandon the later in-flight publishes, reuse their offsets."""
        later = cut_from(state.inflight, pub)
        assert pub.message is not None
        state.next_offset = pub.message.offset
        if self.store is not None:
            # The store may hold the offset after all (an ambiguous failure, or another node
            # got there first): drain, then re-take the lease and reconcile before reusing.
            state.must_reconcile = True
            state.yielding = True
        self._finish(pub, error)
        for other in later:
            other.abandoned = True
            self._finish(other, abandoned_error(other, pub, error))
        self._drained(state)

    def _abandon(self, state: _Writing, error: BaseException) -> None:
        """Fail every in-flight publish of ``state`` (the lease or Redis was lost)."""
        pubs = list(state.inflight)
        state.inflight.clear()
        for pub in pubs:
            pub.abandoned = True
            self._finish(pub, error)
        released, state.released = state.released, None
        if released is not None and not released.done():
            released.set_result(None)
