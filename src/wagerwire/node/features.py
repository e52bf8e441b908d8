"""The optional parts a default server runs with, chosen from the settings.

Each is a :class:`~wagerwire.api.feature.Feature`: REST routers, stream routes, sources and
start hooks; :func:`default_features` is the one list of them, in wiring order. The demo
simulators resume where the store says they stopped, so a restarted hub keeps
one continuous sequence of rounds per game.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from wagerwire.api.domain import domain_feature
from wagerwire.api.feature import Feature
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dashboard import dashboard_feature
from wagerwire.node.connectors import connectors_feature
from wagerwire.node.dialects import dialect_feature
from wagerwire.node.pusher import pusher_feature
from wagerwire.node.sportsgameodds import sgo_app, sgo_feature
from wagerwire.sources.casino import (
    DEFAULT_CHAIN_LENGTH,
    BalanceSimulator,
    CasinoSimulator,
    GameSpec,
    demo_games,
)
from wagerwire.sources.sports import SportsConfig, SportsSimulator

__all__ = ["ResumingCasinoSource", "default_features", "demo_feature"]

log = logging.getLogger("wagerwire.node.features")


class ResumingCasinoSource:
    """A casino simulator that first reads the last round index of its channel."""

    def __init__(self, spec: GameSpec, seed: int, cadence_scale: float, hub: Hub) -> None:
        self.spec = spec
        self.seed = seed
        self.cadence_scale = cadence_scale
        self.hub = hub

    async def run(self, publisher: Any) -> None:
        start = 0
        last = await self.hub.store.read_last(self.spec.channel, 1)
        if last:
            try:
                start = int(orjson.loads(last[0].data).get("index", 0))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                log.warning("cannot read the last round of %s; starting at 1", self.spec.channel)
        simulator = CasinoSimulator(
            self.spec, self.seed, cadence_scale=self.cadence_scale,
            chain_length=DEFAULT_CHAIN_LENGTH, start_index=start,
        )
        await simulator.run(publisher)


class ClosingSportsSource:
    """The sports simulator, after closing the events a previous run left open.

    A restarted simulator starts new events; events it left upcoming or live in the store
    would otherwise stay "live" forever with a frozen clock. They are published once more as
    finished (``"abandoned": true``) so every snapshot and client sees them end.
    """

    def __init__(self, simulator: SportsSimulator, hub: Hub) -> None:
        self.simulator = simulator
        self.hub = hub

    async def run(self, publisher: Any) -> None:
        for info in await self.hub.store.channels():
            if not info.name.startswith("sports:event:"):
                continue
            last = await self.hub.store.read_last(info.name, 1)
            if not last:
                continue
            try:
                event = orjson.loads(last[0].data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict) or event.get("status") == "finished":
                continue
            event.update(status="finished", live=False, abandoned=True,
                         seq=int(event.get("seq") or 0) + 1)
            attrs = {k: v for k, v in (last[0].attrs or {}).items()}
            attrs["live"] = "false"
            await publisher.publish(info.name, event, attrs=attrs)
        await self.simulator.run(publisher)


def demo_feature(settings: Settings, hub: Hub) -> Feature:
    """Every demo game, demo balances and the sports simulator, at ``demo_speed``."""
    scale = 1.0 / max(settings.demo_speed, 1e-3)
    sources: list[Any] = [
        ResumingCasinoSource(spec, settings.demo_seed, scale, hub) for spec in demo_games()
    ]
    sources.append(BalanceSimulator(settings.demo_seed, cadence_scale=scale))
    sources.append(ClosingSportsSource(SportsSimulator(SportsConfig(
        seed=settings.demo_seed, interval_ms=max(50, int(1000 * scale))
    )), hub))
    return Feature(sources=sources)


def default_features(settings: Settings, hub: Hub) -> list[Feature]:
    """The optional parts of a default node, in the order the server plugs them in.

    The native streams (``/v1/ws``, ``/v1/sse``) and the core REST routers (system,
    channels, auth: ``api.application.create_api``) are not optional: ``Server`` always
    mounts them first. ``serve`` adds the readiness hook (``backends.with_readiness``).
    """
    features: list[Feature] = [
        domain_feature(settings, hub),  # REST: games, rounds, stats, verification, sports, odds
        dashboard_feature(settings, hub),  # the page at / and its /static/ assets
    ]
    if settings.demo:  # unless --no-demo: casino games, balances, sports simulator
        features.append(demo_feature(settings, hub))
    features.append(dialect_feature(settings, hub))  # Data Stream, TrackerSino, Stake
    sgo = sgo_app()
    features.append(pusher_feature(settings, hub, [sgo]))  # Pusher protocol, HTTP API, auth
    # SportsGameOdds REST + notifications on Pusher (from one node: a Redis lease)
    features.append(sgo_feature(sgo, settings.broker))
    features.append(connectors_feature(settings, hub))  # [[sources]]: upstream connectors
    return features
