"""KeyGate: auth decisions backed by API keys, plans, stream tokens and limits.

Modes: ``open`` (the embedded default: anonymous clients read public channels, and publish
only when ``anonymous_publish`` is set; keys and tokens are honoured with their plan's limits)
and ``required`` (every stream and every REST call but health, metrics and docs needs a key
or a token). Every refusal is a
specific error: 401 for credentials, 403 for what the plan or role forbids, 429 with a retry
delay for limits, 503 ``limits_unavailable`` when the limits cannot be checked.

Limits go through one :class:`~wagerwire.auth.limits.Limits` (in-process, or Redis-kept when
the hub runs on a Redis broker). Anonymous clients are never counted: their streams open
synchronously with :data:`NO_SLOT`. A keyed stream's slot is acquired while the HTTP layer
awaits :meth:`StreamSlot.admit`, before the upgrade is answered. Every ``SLOT_RENEW_S`` the
gate renews all of this node's slots in one call; if that fails (Redis unreachable) the open
streams stay open, the failure is logged once, and the next tick renews them again (slots
that expired meanwhile are counted again). Releases of closed streams are batched the same
way, best effort: a slot that could not be released expires after ``SLOT_TTL_S``.

Revocations reach every node two ways: the key store pushes changes it is told of
(PostgreSQL ``NOTIFY``, sent in the revoking transaction: the key's streams on every node
close within milliseconds), and every ``REVOCATION_POLL_S`` the gate re-reads the revoked ids
(so a missed notification, or a SQLite file changed by the CLI, converges within seconds).
The same poll refreshes the stored Pusher apps for whoever listens (:meth:`on_apps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Literal

from wagerwire.auth.identity import (
    NO_SLOT,
    Gate,
    Identity,
    StreamSlot,
    may_match_private,
)
from wagerwire.auth.keys import AppRecord, KeyBackend, KeyRecord
from wagerwire.auth.limits import Limits, LocalLimits, SlotRef
from wagerwire.auth.plans import Plan, plan_allows
from wagerwire.auth.stream_tokens import (
    TOKEN_PREFIX,
    TOKEN_TTL_S,
    TokenClaims,
    sign_token,
    verify_token,
)
from wagerwire.core.channels import is_pattern, is_private
from wagerwire.errors import (
    BadParameter,
    Forbidden,
    KeyInUrl,
    LimitsUnavailable,
    RateLimited,
    Unauthorized,
)

__all__ = ["KeyGate", "credential_from"]

log = logging.getLogger("wagerwire.auth")

REVOCATION_POLL_S = 2.0
SLOT_RENEW_S = 8.0  # all of this node's stream slots (30 s TTL) are renewed this often
TOUCH_EVERY_S = 60.0
SPENT_MARGIN_S = 60.0  # a spent token is remembered this long past its expiry (clock skew)


def credential_from(headers: Mapping[str, str], query_token: str | None) -> str | None:
    """The key or token a request carries: ``Authorization: Bearer``, ``X-Api-Key``,
    ``x-access-token`` (Stake) or ``?token=``.

    Raises:
        KeyInUrl: ``?token=`` holds something other than a stream token. URLs end up in
            logs, histories and Referer headers: only short-lived stream tokens go there.
    """
    if query_token and not query_token.startswith(TOKEN_PREFIX + "."):
        raise KeyInUrl("?token= takes a stream token (POST /v1/tokens), never an API key: "
                       "send keys as Authorization: Bearer <key>")
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    for name in ("x-api-key", "x-access-token"):
        value = headers.get(name)
        if value:
            return value.strip()
    return query_token or None


class _Slot(StreamSlot):
    """A keyed stream's slot: pending until :meth:`admit` acquired it from the limits."""

    __slots__ = ("gate", "key_id", "plan", "slot_id")

    pending = True

    def __init__(self, gate: KeyGate, key_id: str, plan: Plan) -> None:
        super().__init__()
        self.gate = gate
        self.key_id = key_id
        self.plan = plan
        self.slot_id: str | None = None

    async def admit(self) -> None:
        plan = self.plan
        if self.once is not None:  # a single-use token: spent here, on every node at once
            # Remembered for the token's whole life (+ clock skew), not per calendar day.
            left = (self.gate.token_ttl if self.expires_at is None
                    else max(0.0, self.expires_at - self.gate.clock()))
            ttl = left + SPENT_MARGIN_S
            if not await self.gate.limits.spend_once(self.once, ttl):
                raise Unauthorized("this stream token was already used; request a new token "
                                   "for every connection")
        slot_id = await self.gate.limits.acquire_stream(self.key_id, plan.max_streams)
        if slot_id is None:
            raise RateLimited(
                f"plan {plan.name!r} allows {plan.max_streams} concurrent stream(s) per "
                "key; close one first", retry_after=1.0,
            )
        self.slot_id = slot_id
        if self._released:  # the connection went away while the slot was acquired
            self.gate._free((self.key_id, slot_id))
            return
        self.gate.slots.setdefault(self.key_id, set()).add(self)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.slot_id is None:
            return  # never admitted: nothing is counted
        self.gate._free((self.key_id, self.slot_id))
        slots = self.gate.slots.get(self.key_id)
        if slots is not None:
            slots.discard(self)
            if not slots:
                del self.gate.slots[self.key_id]


class KeyGate(Gate):
    """Keys from a :class:`~wagerwire.auth.keys.KeyBackend`, plans from config; limits from
    ``limits`` (kept in this process unless given, e.g. Redis-kept ones that hold across
    nodes)."""

    def __init__(
        self,
        keystore: KeyBackend,
        plans: Mapping[str, Plan],
        mode: str = "open",
        clock: Callable[[], float] = time.time,
        token_ttl: int = TOKEN_TTL_S,
        limits: Limits | None = None,
        anonymous_publish: bool = False,
    ) -> None:
        if mode not in ("open", "required"):
            raise ValueError("auth mode must be 'open' or 'required'")
        self.keystore = keystore
        self.plans = dict(plans)
        self.mode = mode
        self.clock = clock
        self.token_ttl = token_ttl
        # Off by default: a page on any origin can reach a hub on the user's machine (a
        # no-cors POST, or a WebSocket, which has no CORS at all) and would publish into it.
        self.anonymous_publish = anonymous_publish
        self.limits: Limits = limits if limits is not None else LocalLimits(clock)
        self.slots: dict[str, set[_Slot]] = {}  # admitted slots of this node's open streams
        self._releasing: list[SlotRef] = []  # closed streams' slots, freed in one call
        self._renewer: asyncio.Task[None] | None = None
        self._records: dict[str, KeyRecord] = {}
        self._revoked: set[str] = set(keystore.revoked_ids())
        self._touched: dict[str, float] = {}
        self._signing: dict[str, bytes] = keystore.signing_keys()
        self._poller: asyncio.Task[None] | None = None
        self._anonymous: Identity | None = None
        # Revocations applied, by how they arrived: "local" (this node), "notify", "poll".
        self.revocations: dict[str, int] = {"local": 0, "notify": 0, "poll": 0}
        self._app_listeners: list[Callable[[list[AppRecord]], None]] = []
        self._apps_seen: list[AppRecord] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._check_failing = False  # the store could not be read: said once, until it can

    # -- identity --------------------------------------------------------------------------

    def plan(self, name: str) -> Plan:
        return self.plans.get(name) or self.plans["open"]

    def anonymous(self) -> Identity:
        channels = self.plan("open").channels
        anon = self._anonymous
        if anon is None or anon.channels is not channels:  # one frozen object per plan
            anon = self._anonymous = Identity(None, "anonymous", "open", None, channels)
        return anon

    def authenticate(
        self, headers: Mapping[str, str], query_token: str | None = None
    ) -> Identity:
        cred = credential_from(headers, query_token)
        if cred is None:
            if self.mode == "required":
                raise Unauthorized(
                    "credentials required: send Authorization: Bearer <key or token>, "
                    "X-Api-Key, or ?token=<stream token>"
                )
            return self.anonymous()
        if cred.startswith(TOKEN_PREFIX + "."):
            claims = self._verify_token(cred)
            return self._identity(claims.key_id, claims.role, claims.plan, claims.user_id,
                                  via_token=True, expires_at=claims.expires_at)
        record = self._record(cred)
        return self._identity(record.id, record.role, record.plan, record.user_id)

    def _verify_token(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) == 4 and parts[1] not in self._signing:
            self._signing = self.keystore.signing_keys()  # maybe rotated by another process
        claims = verify_token(token, self._signing, self.clock())
        # The store, not only the polled set, so a revocation made by the CLI refuses the
        # key's tokens at once (like the key itself), not at the next poll.
        record = self.keystore.get(claims.key_id)
        if record is None or record.revoked_at is not None or claims.key_id in self._revoked:
            raise Unauthorized("the key this token was issued for is revoked")
        return claims

    def _record(self, key: str) -> KeyRecord:
        record = self.keystore.verify(key)
        if record is None:
            raise Unauthorized("invalid API key")
        if record.revoked_at is not None or record.id in self._revoked:
            raise Unauthorized("this API key is revoked")
        now = self.clock()
        if now - self._touched.get(record.id, 0.0) > TOUCH_EVERY_S:
            self._touched[record.id] = now
            self.keystore.touch(record.id, now)
        return record

    def _identity(
        self, key_id: str, role: str, plan: str, user_id: str | None, via_token: bool = False,
        expires_at: int | None = None,
    ) -> Identity:
        known = self.plans.get(plan)
        if known is None:  # never fall back to the anonymous plan's (unlimited) limits
            raise Forbidden(f"plan {plan!r} of this key is not configured on this server")
        return Identity(key_id, role, plan, user_id, known.channels, via_token, expires_at)

    # -- decisions -------------------------------------------------------------------------

    def can_publish(self, identity: Identity) -> bool:
        return identity.can_publish or (
            identity.role == "anonymous" and self.mode == "open" and self.anonymous_publish
        )

    def resolve_channel(self, identity: Identity, channel: str) -> str:
        if channel == "user:balances" or channel.startswith("user:me:"):
            if identity.user_id is None:
                raise Forbidden(f"{channel} needs a key or token bound to a user")
            suffix = "balances" if channel == "user:balances" else channel[len("user:me:"):]
            return f"user:{identity.user_id}:{suffix}"
        if identity.role == "admin":
            return channel
        if is_pattern(channel) and may_match_private(channel):
            # A pattern matches live messages and replays resume positions of every channel
            # it covers: only one that stays inside the holder's own user:{id}: is allowed.
            own = f"user:{identity.user_id}:"
            if identity.user_id is None or not channel.split("*", 1)[0].startswith(own):
                raise Forbidden(f"pattern {channel} could match other users' private "
                                "channels; use a narrower pattern such as game:* or "
                                "user:me:*")
            return channel
        if is_private(channel):
            owner = channel.split(":")[1] if channel.count(":") >= 1 else ""
            if identity.user_id is None or owner != identity.user_id:
                raise Forbidden(f"{channel} is another user's private channel")
            return channel
        if not plan_allows(identity.channels, channel):
            raise Forbidden(f"plan {identity.plan!r} does not include {channel}")
        return channel

    def max_subscriptions(self, identity: Identity) -> int | None:
        return self.plan(identity.plan).max_subscriptions

    def delivery_rate(self, identity: Identity, conflate_ms: int = 0) -> tuple[int, int]:
        plan = self.plan(identity.plan)
        return max(conflate_ms, plan.min_conflate_ms), plan.delay_ms

    def check_stream(self, identity: Identity) -> None:
        plan = self.plan(identity.plan)
        if not plan.stream:
            raise Forbidden(f"plan {plan.name!r} does not include streaming; use REST or "
                            "upgrade the plan")

    def open_stream(self, identity: Identity, transport: str) -> StreamSlot:
        plan = self.plan(identity.plan)
        self.check_stream(identity)
        if identity.key_id is None:
            return NO_SLOT
        slot = _Slot(self, identity.key_id, plan)
        slot.expires_at = identity.expires_at  # the stream closes when its token expires
        return slot

    async def check_rest(self, identity: Identity) -> None:
        """Count one REST request against the key's per-minute bucket."""
        if identity.key_id is None:
            return
        plan = self.plan(identity.plan)
        wait = await self.limits.take_rate(identity.key_id, plan.rest_per_minute)
        if wait:
            raise RateLimited(f"plan {plan.name!r} allows {plan.rest_per_minute} REST "
                              "requests per minute", retry_after=wait)

    async def issue_token(self, identity: Identity) -> tuple[str, int]:
        """A stream token for a key holder; counts against the daily token quota."""
        if identity.key_id is None:
            raise Unauthorized("a stream token needs an API key (Authorization: Bearer)")
        if identity.via_token:
            raise Forbidden("a stream token cannot be exchanged for another; send the API key")
        plan = self.plan(identity.plan)
        wait = await self.limits.take_daily(identity.key_id, plan.token_requests_per_day)
        if wait:
            raise RateLimited(f"plan {plan.name!r} allows {plan.token_requests_per_day} "
                              "stream tokens per day", retry_after=wait)
        now = self.clock()
        kid = self.keystore.current_signing_kid()
        if kid not in self._signing:
            self._signing = self.keystore.signing_keys()
        expires = math.ceil(now) + self.token_ttl  # valid for at least token_ttl seconds
        claims = TokenClaims(identity.key_id, identity.role, identity.plan, identity.user_id,
                             int(now), expires, secrets.token_urlsafe(9))
        return sign_token(claims, kid, self._signing[kid]), expires

    # -- key management --------------------------------------------------------------------

    def create_key(
        self, role: str, plan: str, user_id: str | None, name: str | None
    ) -> tuple[KeyRecord, str]:
        if plan not in self.plans:
            raise BadParameter(f"unknown plan {plan!r}; plans: {', '.join(sorted(self.plans))}")
        return self.keystore.create(role, plan, user_id, name)

    def list_keys(self) -> list[KeyRecord]:
        return self.keystore.list()

    # -- revocation ------------------------------------------------------------------------

    def revoke(self, key_id: str) -> bool:
        """Revoke in the store and close the key's open streams now."""
        changed = self.keystore.revoke(key_id)
        self._apply_revocation(key_id, "local")
        return changed

    def _apply_revocation(self, key_id: str, via: Literal["local", "notify", "poll"]) -> None:
        if key_id not in self._revoked:
            self.revocations[via] += 1
        self._revoked.add(key_id)
        for slot in list(self.slots.get(key_id, ())):
            if slot.on_revoke is not None:
                slot.on_revoke()

    def start(self) -> None:
        """Follow the store's pushed changes, poll it for revocations made elsewhere (the
        CLI, another node) and for stored apps, and renew this node's stream slots."""
        loop = asyncio.get_running_loop()

        def pushed(kind: str, ident: str) -> None:  # on the key store's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(self._pushed, kind, ident)

        self.keystore.watch(pushed)
        self._poller = loop.create_task(self._poll())
        self._renewer = loop.create_task(self._renew_slots())

    def _pushed(self, kind: str, ident: str) -> None:
        if kind == "revoke" and ident not in self._revoked:
            log.info("key %s revoked (notified); closing its streams", ident)
            self._apply_revocation(ident, "notify")
        elif kind in ("apps", "resync"):
            self._side_task(self._check(revocations=kind == "resync"))

    def _side_task(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def on_apps(self, listener: Callable[[list[AppRecord]], None]) -> None:
        """Call ``listener`` with the stored Pusher apps now and whenever they change."""
        self._app_listeners.append(listener)
        apps = self.keystore.apps()
        self._apps_seen = apps
        listener(apps)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_POLL_S)
            await self._check()

    async def _check(self, revocations: bool = True) -> None:
        """Re-read the revoked ids (and the stored apps, when someone listens)."""
        try:
            if revocations:
                revoked = await asyncio.to_thread(self.keystore.revoked_ids)
                for key_id in revoked - self._revoked:
                    log.info("key %s revoked; closing its streams", key_id)
                    self._apply_revocation(key_id, "poll")
            apps = await asyncio.to_thread(self.keystore.apps) if self._app_listeners else None
        except Exception as exc:
            if not self._check_failing:
                log.warning("cannot read revocations and apps from the key store (retried "
                            "every %.0f s): %s", REVOCATION_POLL_S, exc)
            self._check_failing = True
            return
        if self._check_failing:
            log.info("key store readable again")
            self._check_failing = False
        if apps is not None and apps != self._apps_seen:
            self._apps_seen = apps
            for listener in self._app_listeners:
                listener(apps)

    async def _renew_slots(self) -> None:
        """Every ``SLOT_RENEW_S``, renew all admitted slots at once (one Redis round trip)."""
        failing = False
        while True:
            await asyncio.sleep(SLOT_RENEW_S)
            held = [(key_id, slot.slot_id) for key_id, slots in self.slots.items()
                    for slot in slots if slot.slot_id is not None]
            try:
                await self.limits.renew_streams(held)
            except LimitsUnavailable as exc:
                if not failing:
                    log.warning("cannot renew %d stream slot(s); open streams stay open and "
                                "are renewed at the next tick: %s", len(held), exc.message)
                failing = True
                continue
            except Exception:
                log.exception("renewing stream slots failed")
                continue
            if failing:
                log.info("stream slots renewed again")
                failing = False

    def _free(self, ref: SlotRef) -> None:
        """Free a closed stream's slot with the others closed in the same loop turn."""
        if not self._releasing:
            asyncio.get_running_loop().call_soon(self._flush_releases)
        self._releasing.append(ref)

    def _flush_releases(self) -> None:
        batch, self._releasing = self._releasing, []
        if batch:
            asyncio.get_running_loop().create_task(self._release(batch))

    async def _release(self, batch: list[SlotRef]) -> None:
        try:
            await self.limits.release_streams(batch)
        except LimitsUnavailable as exc:
            log.warning("cannot release %d stream slot(s); they expire by themselves: %s",
                        len(batch), exc.message)

    def stop(self) -> None:
        self.keystore.watch(None)
        for task in (self._poller, self._renewer, *self._side_tasks):
            if task is not None:
                task.cancel()

    async def aclose(self) -> None:
        """Stop, free the slots still held, and close the limits' connections."""
        self.stop()
        held = [(key_id, slot.slot_id) for key_id, slots in self.slots.items()
                for slot in slots if slot.slot_id is not None] + self._releasing
        self._releasing = []
        if held:
            with contextlib.suppress(LimitsUnavailable):
                await self.limits.release_streams(held)
        await self.limits.aclose()
