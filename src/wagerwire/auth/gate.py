"""KeyGate: auth decisions backed by API keys, plans, stream tokens and limits.

Modes: ``open`` (the embedded default: anonymous clients read public channels, and publish
only when ``anonymous_publish`` is set; keys and tokens are honoured with their plan's limits) and ``required`` (every stream and
every REST call but health, metrics and docs needs a key or a token). Every refusal is a
specific error: 401 for credentials, 403 for what the plan or role forbids, 429 with a retry
delay for limits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping

from wagerwire.auth.identity import (
    NO_LEASE,
    Gate,
    Identity,
    StreamLease,
    may_match_private,
)
from wagerwire.auth.keys import KeyRecord, KeyStore
from wagerwire.auth.limits import DAY, DailyQuota, StreamCounter, TokenBucket
from wagerwire.auth.limits_redis import SharedLimits
from wagerwire.auth.plans import Plan, plan_allows
from wagerwire.auth.stream_tokens import (
    TOKEN_PREFIX,
    TOKEN_TTL_S,
    TokenClaims,
    sign_token,
    verify_token,
)
from wagerwire.core.channels import is_pattern, is_private
from wagerwire.errors import BadParameter, Forbidden, KeyInUrl, RateLimited, Unauthorized

__all__ = ["KeyGate", "credential_from"]

log = logging.getLogger("wagerwire.auth")

REVOCATION_POLL_S = 2.0
LEASE_RENEW_EVERY = 4  # polls: shared stream leases (30 s TTL) are renewed every 8 s
TOUCH_EVERY_S = 60.0


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


class _Lease(StreamLease):
    __slots__ = ("gate", "key_id", "shared_id")

    def __init__(self, gate: KeyGate, key_id: str | None, shared_id: str | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.key_id = key_id
        self.shared_id = shared_id  # the lease in Redis when limits are shared across nodes

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.key_id is not None:
            shared = self.gate.shared
            if shared is not None and self.shared_id is not None:
                try:
                    shared.release_stream(self.key_id, self.shared_id)
                except Exception:  # the lease expires by itself after its TTL
                    log.warning("cannot release a shared stream lease; it will expire")
            else:
                self.gate.streams.release(self.key_id)
            leases = self.gate.leases.get(self.key_id)
            if leases is not None:
                leases.discard(self)


class KeyGate(Gate):
    """Keys from a :class:`KeyStore`, plans from config; limits kept in this process, or in
    Redis (``shared``) when the hub runs on a Redis broker, so they hold across nodes."""

    def __init__(
        self,
        keystore: KeyStore,
        plans: Mapping[str, Plan],
        mode: str = "open",
        clock: Callable[[], float] = time.time,
        token_ttl: int = TOKEN_TTL_S,
        shared: SharedLimits | None = None,
        anonymous_publish: bool = False,
    ) -> None:
        if mode not in ("open", "required"):
            raise ValueError("auth mode must be 'open' or 'required'")
        self.keystore = keystore
        self.plans = dict(plans)
        self.mode = mode
        self.clock = clock
        self.token_ttl = token_ttl
        self.shared = shared  # Redis-kept limits: they then hold across nodes and workers
        # Off by default: a page on any origin can reach a hub on the user's machine (a
        # no-cors POST, or a WebSocket, which has no CORS at all) and would publish into it.
        self.anonymous_publish = anonymous_publish
        self.streams = StreamCounter()
        self.leases: dict[str, set[_Lease]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._quotas: dict[str, DailyQuota] = {}
        self._records: dict[str, KeyRecord] = {}
        self._revoked: set[str] = set(keystore.revoked_ids())
        self._touched: dict[str, float] = {}
        self._signing: dict[str, bytes] = keystore.signing_keys()
        self._poller: asyncio.Task[None] | None = None
        self._anonymous: Identity | None = None

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

    def open_stream(self, identity: Identity, transport: str) -> StreamLease:
        plan = self.plan(identity.plan)
        if not plan.stream:
            raise Forbidden(f"plan {plan.name!r} does not include streaming; use REST or "
                            "upgrade the plan")
        if identity.key_id is None:
            return NO_LEASE
        if self.shared is not None:
            shared_id = self.shared.acquire_stream(identity.key_id, plan.max_streams)
            admitted = shared_id is not None
        else:
            shared_id = None
            admitted = self.streams.acquire(identity.key_id, plan.max_streams)
        if not admitted:
            raise RateLimited(
                f"plan {plan.name!r} allows {plan.max_streams} concurrent stream(s) per "
                "key; close one first", retry_after=1.0,
            )
        lease = _Lease(self, identity.key_id, shared_id)
        lease.expires_at = identity.expires_at  # the stream closes when its token expires
        self.leases.setdefault(identity.key_id, set()).add(lease)
        return lease

    def check_rest(self, identity: Identity) -> None:
        """Count one REST request against the key's per-minute bucket."""
        if identity.key_id is None:
            return
        plan = self.plan(identity.plan)
        if self.shared is not None:
            wait = self.shared.take_rate(f"rest:{identity.key_id}", plan.rest_per_minute)
        else:
            bucket = self._buckets.get(identity.key_id)
            if bucket is None:
                bucket = self._buckets[identity.key_id] = TokenBucket(plan.rest_per_minute, 60.0)
            wait = bucket.take(self.clock())
        if wait:
            raise RateLimited(f"plan {plan.name!r} allows {plan.rest_per_minute} REST "
                              "requests per minute", retry_after=wait)

    def issue_token(self, identity: Identity) -> tuple[str, int]:
        """A stream token for a key holder; counts against the daily token quota."""
        if identity.key_id is None:
            raise Unauthorized("a stream token needs an API key (Authorization: Bearer)")
        if identity.via_token:
            raise Forbidden("a stream token cannot be exchanged for another; send the API key")
        plan = self.plan(identity.plan)
        now = self.clock()
        if self.shared is not None:
            day = int(now // DAY)
            ok = self.shared.take_daily(f"tokens:{identity.key_id}", plan.token_requests_per_day,
                                        day)
            wait = 0.0 if ok else (day + 1) * DAY - now
        else:
            quota = self._quotas.get(identity.key_id)
            if quota is None:
                quota = self._quotas[identity.key_id] = DailyQuota(plan.token_requests_per_day)
            wait = quota.take(now)
        if wait:
            raise RateLimited(f"plan {plan.name!r} allows {plan.token_requests_per_day} "
                              "stream tokens per day", retry_after=wait)
        kid = self.keystore.current_signing_kid()
        if kid not in self._signing:
            self._signing = self.keystore.signing_keys()
        expires = math.ceil(now) + self.token_ttl  # valid for at least token_ttl seconds
        claims = TokenClaims(identity.key_id, identity.role, identity.plan, identity.user_id,
                             int(now), expires)
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
        self._apply_revocation(key_id)
        return changed

    def _apply_revocation(self, key_id: str) -> None:
        self._revoked.add(key_id)
        for lease in list(self.leases.pop(key_id, ())):
            if lease.on_revoke is not None:
                lease.on_revoke()

    def start(self) -> None:
        """Poll the store for revocations made elsewhere (the CLI, another node)."""
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(REVOCATION_POLL_S)
            beats += 1
            if self.shared is not None and beats % LEASE_RENEW_EVERY == 0:
                self._renew_shared_leases()
            try:
                revoked = await asyncio.to_thread(self.keystore.revoked_ids)
            except Exception:
                log.exception("cannot read revocations")
                continue
            for key_id in revoked - self._revoked:
                log.info("key %s revoked; closing its streams", key_id)
                self._apply_revocation(key_id)

    def _renew_shared_leases(self) -> None:
        """Keep this node's open streams counted in Redis (a dead node's expire)."""
        shared = self.shared
        assert shared is not None
        for key_id, leases in list(self.leases.items()):
            for lease in list(leases):
                if lease.shared_id is not None:
                    try:
                        shared.renew_stream(key_id, lease.shared_id)
                    except Exception:
                        log.warning("cannot renew shared stream leases (Redis down?)")
                        return

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
