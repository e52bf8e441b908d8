"""Composition root: build the hub and its adapters from Settings, serve, shut down cleanly.

Shutdown order (SIGTERM/SIGINT): stop accepting; close every stream (WebSocket 1001 with a
resume hint, SSE ``shutdown`` event) so clients reconnect and resume; stop the sources; flush
and close the store; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from wagerwire.api.application import create_api
from wagerwire.api.deps import Services
from wagerwire.api.feature import Feature
from wagerwire.auth.gate import KeyGate
from wagerwire.auth.plans import parse_plans
from wagerwire.brokers.redis_limits import RedisLimits
from wagerwire.config import Settings
from wagerwire.core.conflation import PolicyTable
from wagerwire.core.hub import Hub, HubLimits
from wagerwire.errors import BadParameter
from wagerwire.node.backends import build_backends, build_keystore, redis_url_and_prefix
from wagerwire.observability.access import AccessLog
from wagerwire.observability.cluster import HEARTBEAT_S, ClusterView, default_node_id
from wagerwire.observability.metrics import NodeMetrics
from wagerwire.tls import CertificateError, CertificateSource, open_certificate_source
from wagerwire.transports.http import HttpProtocol, HttpServerState, StreamRoutes
from wagerwire.transports.sse import NativeSseConnection, SseConnection
from wagerwire.transports.stream import Flusher, StreamConfig, StreamRegistry
from wagerwire.transports.websocket import NativeWsConnection
from wagerwire.transports.webtransport import Certified, WebTransportServer

__all__ = ["Server", "build_hub", "build_tls", "install_uvloop", "run"]

log = logging.getLogger("wagerwire.node.server")

TICK_SECONDS = 5.0
SWITCH_INTERVAL_S = 0.0005


def install_uvloop() -> bool:
    """Use uvloop when it is installed (it is a default dependency on Linux and macOS)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def build_hub(settings: Settings) -> Hub:
    """The hub over the store and broker named by the settings' URLs (``backends.py``)."""
    store, broker = build_backends(settings)
    limits = HubLimits(
        max_channels_per_sink=settings.max_channels,
        max_message_bytes=settings.max_message_bytes,
        idempotency_window_s=settings.idempotency_window,
        parse_cache_bytes=settings.parse_cache_bytes,
    )
    return Hub(store, broker, limits, PolicyTable.parse(settings.channel_policies or None))


def shared_limits(broker_url: str) -> RedisLimits | None:
    """With a Redis broker, the plans' limits are kept in that Redis (same key prefix)."""
    if not broker_url.startswith(("redis://", "rediss://", "redis+sentinel://")):
        return None
    url, prefix = redis_url_and_prefix(broker_url)
    return RedisLimits.from_url(url, prefix=f"{prefix}:limits")


def build_gate(settings: Settings) -> KeyGate:
    """API keys from the key store (PostgreSQL's when the store is), plans from the config."""
    keystore = build_keystore(settings)
    return KeyGate(keystore, parse_plans(settings.plans), settings.auth,
                   token_ttl=settings.token_ttl, limits=shared_limits(settings.broker),
                   anonymous_publish=settings.anonymous_publish)


def create_demo_keys(gate: KeyGate) -> list[str]:
    """On a first start with auth open: a reader key for demo user demo-1, a publisher key
    and an ``os_live_`` OddsStream key (plan pro+live), printed once (only their hashes are
    kept)."""
    if gate.keystore.count():
        return []
    _, reader = gate.keystore.create("reader", "allstar", "demo-1", "demo reader (demo-1)")
    _, publisher = gate.keystore.create("publisher", "internal", None, "demo publisher")
    _, odds = gate.keystore.create("reader", "pro+live", None, "demo OddsStream",
                                   prefix="os_live_")
    return [f"  demo reader key (user demo-1): {reader}",
            f"  demo publisher key:            {publisher}",
            f"  demo OddsStream key:           {odds}",
            "  (shown once; only their hashes are stored)"]


def build_tls(settings: Settings) -> CertificateSource | None:
    """The listener's certificate (``tls_cert``/``tls_key``, or ``tls_dev``), None: plain."""
    try:
        return open_certificate_source(settings.tls_cert or None, settings.tls_key or None,
                                       dev=settings.tls_dev,
                                       dev_dir=settings.tls_dev_dir or None)
    except (OSError, CertificateError) as exc:
        raise BadParameter(f"TLS certificate: {exc}") from exc


class Server:
    """One running wagerwire node: hub, HTTP front door, streams and sources."""

    def __init__(
        self,
        settings: Settings,
        features: Callable[[Settings, Hub], list[Feature]] | None = None,
    ) -> None:
        self.settings = settings
        self.hub = build_hub(settings)
        self.metrics = NodeMetrics(self.hub)
        self.hub.observer = self.metrics
        self.metrics.attach_store(self.hub.store)
        self.gate = build_gate(settings)
        self.features = features(settings, self.hub) if features is not None else []
        self.registry: StreamRegistry | None = None
        self.services: Services | None = None
        self._server: asyncio.base_events.Server | None = None
        self._http: HttpServerState | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.port = settings.port
        # The TCP listener's certificate (None: plain HTTP); the HTTP/3 listener uses it too.
        self.tls: CertificateSource | None = None
        self.cluster: ClusterView | None = None
        # The WebTransport listener (settings.webtransport) and where its certificate comes
        # from: (leaf, chain, private key), asked again for every reload.
        self.webtransport: WebTransportServer | None = None
        self.certificate: Callable[[], Certified] | None = None

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self.tls = build_tls(settings)  # first: a certificate that does not load stops here
        # The store's writer thread must get the GIL promptly while the loop is busy fanning
        # out, or every commit waits out the default 5 ms switch interval (measured: bench/).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        await self.hub.start()
        config = StreamConfig(
            outbox_limit=settings.outbox_limit,
            ping_interval=settings.ping_interval,
            pong_timeout=settings.pong_timeout,
            sse_heartbeat=settings.sse_heartbeat,
            max_frame_bytes=settings.max_message_bytes + 4096,
            max_body_bytes=settings.max_body_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
        )
        flusher = Flusher(loop, lambda: self.hub.persisting > 0)
        flusher.observe = self.metrics.flushing
        registry = self.registry = StreamRegistry(self.hub, flusher, config, self.gate)
        self.gate.start()
        routes = StreamRoutes()
        routes.add("ws", "/v1/ws", NativeWsConnection.from_request)
        routes.add("sse", "/v1/sse", NativeSseConnection.from_request)
        tls = self.tls
        svc = self.services = Services(self.hub, time.time(), gate=self.gate, tls=tls)
        svc.connection_counts = self._connection_counts
        svc.slow_consumers = lambda: registry.slow_consumers
        svc.metrics = self.metrics
        self.metrics.started_at = svc.started_at
        self.metrics.streams = registry
        self.metrics.services = svc
        self.metrics.connection_counts = self._stream_counts
        routers: list[APIRouter] = []
        for feature in self.features:
            routers += feature.routers
            for kind, path, factory in feature.stream_routes:
                routes.add(kind, path, factory)
            for hook in feature.on_start:
                hook(self.hub, svc)
        api = create_api(svc, routers)
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.workers > 1:  # every worker process listens on the same port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            raise BadParameter(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from exc
        self.port = sock.getsockname()[1]
        self.cluster = ClusterView(
            settings.node_id or default_node_id(settings.host, self.port),
            f"{settings.host}:{self.port}", svc.started_at,
            settings.broker.partition(":")[0].replace("rediss", "redis"),
            "postgresql" if settings.store.startswith("postgres") else "sqlite",
        )
        self.metrics.cluster = self.cluster
        self.metrics.gate = self.gate
        http = self._http = HttpServerState(AccessLog(api), routes, registry, loop,
                                            (settings.host, self.port), tls=tls is not None)
        if tls is None:
            self._server = await loop.create_server(
                lambda: HttpProtocol(http), sock=sock, backlog=4096
            )
        else:  # a handshake that stalls is cut like a request head that does
            self._server = await loop.create_server(
                lambda: HttpProtocol(http), sock=sock, backlog=4096, ssl=tls.ssl_context(),
                ssl_handshake_timeout=settings.header_timeout,
            )
            tls.start(settings.tls_reload_interval)
        if settings.webtransport:
            await self._start_webtransport(registry)
            assert self.webtransport is not None
            self.advertise_http3(self.webtransport.port)
        self._tasks.append(loop.create_task(self._tick()))
        self._tasks.append(loop.create_task(self._heartbeat()))
        for feature in self.features:
            for source in feature.sources:
                self._tasks.append(loop.create_task(self._run_source(source)))

    async def _start_webtransport(self, registry: StreamRegistry) -> None:
        from wagerwire.node.webtransport import webtransport_server

        certificate = self.certificate
        tls = self.tls
        if certificate is None and tls is not None:
            source = tls

            def certificate() -> Certified:
                m = source.current()
                return m.certificate, list(m.chain), m.private_key

        if certificate is None:
            raise BadParameter("WebTransport needs a TLS certificate (HTTP/3 is TLS only): "
                               "--tls-cert/--tls-key, or --tls-dev for a development one")
        wt = self.webtransport = webtransport_server(self.settings, registry, certificate)
        if self.certificate is None and tls is not None:
            tls.subscribe(lambda _material: wt.reload())  # new connections, new certificate
        try:
            await wt.start()
        except OSError as exc:
            raise BadParameter(f"cannot listen on UDP {self.settings.host}:"
                               f"{self.settings.webtransport_port}: {exc.strerror or exc}"
                               ) from exc

    async def _run_source(self, source: Any) -> None:
        try:
            await source.run(self.hub)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("source %r stopped with an error", source)

    def _connection_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {"ws": 0, "sse": 0, "wt": 0}
        if self.registry is not None:
            for conn in self.registry.connections:
                kind = "sse" if isinstance(conn, SseConnection) else (
                    "wt" if conn.transport_kind == "wt" else "ws")
                counts[kind] += 1
        return counts

    def _stream_counts(self) -> dict[tuple[str, str], int]:
        """Open streams by (transport, dialect), for /metrics and the dashboard."""
        counts: dict[tuple[str, str], int] = {("ws", "native"): 0, ("sse", "native"): 0}
        if self.registry is not None:
            for conn in self.registry.connections:
                key = conn.tally.key
                counts[key] = counts.get(key, 0) + 1
        return counts

    def advertise_http3(self, port: int | None) -> None:
        """From now on REST responses carry ``Alt-Svc: h3=":<port>"; ma=86400`` (the
        HTTP/3 + WebTransport listener's UDP port, once it is bound); None stops it."""
        if self._http is not None:
            self._http.advertise_http3(port)

    async def _heartbeat(self) -> None:
        """Every ``HEARTBEAT_S``: this node's state into the shared store, everyone's out
        (the dashboard's and /metrics' list of nodes)."""
        cluster = self.cluster
        assert cluster is not None
        failing = False
        while True:
            durable = getattr(self.hub.store, "inner", self.hub.store)  # under a HistoryStore
            record = cluster.record(time.time(), bool(getattr(self.hub.broker, "ready", True)),
                                    bool(getattr(durable, "healthy", True)),
                                    len(self.registry.connections) if self.registry else 0)
            try:
                await asyncio.to_thread(self.gate.keystore.heartbeat, record)
                nodes = await asyncio.to_thread(self.gate.keystore.nodes)
            except Exception as exc:
                if not failing:
                    log.warning("cannot write this node's heartbeat: %s", exc)
                failing = True
                cluster.failed()
            else:
                failing = False
                cluster.update(nodes, time.time())
            await asyncio.sleep(HEARTBEAT_S)

    async def _tick(self) -> None:
        """One timer for every connection: pings, idle timeouts, SSE heartbeats."""
        loop = asyncio.get_running_loop()
        registry = self.registry
        assert registry is not None
        interval = min(TICK_SECONDS, registry.config.ping_interval, registry.config.sse_heartbeat)
        next_ping = loop.time() + registry.config.ping_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            ping = now >= next_ping
            if ping:
                next_ping = now + registry.config.ping_interval
            for conn in list(registry.connections):
                conn.tick(now, ping)

    async def stop(self) -> None:
        """Graceful shutdown; safe to call twice."""
        if self._server is not None:
            self._server.close()
        registry = self.registry
        if registry is not None:
            registry.closing = True
        if self.webtransport is not None:
            await self.webtransport.stop()
        if registry is not None:
            for conn in list(registry.connections):
                conn.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._http is not None:
            for proto in list(self._http.connections):
                if proto.transport is not None:
                    proto.transport.close()
        if any(feature.on_stop for feature in self.features):
            await asyncio.sleep(0.05)  # closed streams' last updates (Pusher presence)
            for feature in self.features:
                for stop in feature.on_stop:
                    with contextlib.suppress(Exception):
                        await stop()
        if self.tls is not None:
            await self.tls.aclose()
        await self.gate.aclose()
        await self.hub.close()
        self.gate.keystore.close()
        await asyncio.sleep(0)


def banner(server: Server) -> str:
    s = server.settings
    secure = "s" if server.tls is not None else ""
    base = f"http{secure}://{s.host}:{server.port}"
    ws = f"ws{secure}://{s.host}:{server.port}"
    tls = []
    if server.tls is not None:
        cert = server.tls.current()
        tls = [f"  TLS        {server.tls.mode} certificate, sha-256 {cert.sha256_b64}, "
               f"valid until {cert.not_after:%Y-%m-%d %H:%M} UTC "
               f"({base}/v1/tls/certificate-hashes)"]
    if server.webtransport is not None:
        wt = f"https://{s.host}:{server.webtransport.port}"
        tls.append(f"  WebTransport {wt}/wt (Data Stream), {wt}/v1/wt (native), UDP")
    return "\n".join([
        f"wagerwire listening on {base}",
        f"  dashboard  {base}/",
        f"  WebSocket  {ws}/v1/ws",
        f"  SSE        {base}/v1/sse?channels=game:crash",
        f"  REST docs  {base}/docs  (OpenAPI {base}/openapi.json)",
        f"  store {s.store}   broker {s.broker}   demo {'on' if s.demo else 'off'}"
        f"   auth {s.auth}",
        *tls,
    ])


def freeze_startup_objects() -> None:
    """Take what start-up built (FastAPI routes, pydantic models, plans: ~70k objects that
    live as long as the process) out of the cyclic collector's way.

    Without it every full collection walks them all: measured at 1,000 subscribers, one
    20-25 ms pause in an 8 s fixed-rate run, enough to double the p99 (bench/RESULTS.md).
    Called once per serving process, never per Server (tests start many in one process).
    """
    gc.collect()
    gc.freeze()


async def run(
    settings: Settings, features: Callable[[Settings, Hub], list[Feature]] | None = None
) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully; returns the exit code."""
    server = Server(settings, features)
    await server.start()
    freeze_startup_objects()
    print(banner(server), flush=True)
    if settings.auth == "open" and settings.demo_keys:
        for line in create_demo_keys(server.gate):
            print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if server.tls is not None:  # SIGHUP: look at the certificate files now
        loop.add_signal_handler(signal.SIGHUP, server.tls.check)
    await stop.wait()
    print("wagerwire: shutting down (clients told to resume)", file=sys.stderr, flush=True)
    await server.stop()
    return 0
