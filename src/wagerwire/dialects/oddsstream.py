"""OddsStream ``/api/stream`` (seed 003), sans-I/O: token and filters in, price frames out.

The client first exchanges its API key for a 5-minute stream token (``POST
/api/stream/token``, api/oddsstream.py), then opens the WebSocket
``/api/stream?token=<token>&sport=Football&competition=EPL&bookmaker=Sharpline``. Filters
combine with AND; their values are the names and codes ``GET /api/sports`` and ``GET
/api/bookmakers`` return (matched case-insensitively; the simulator's slugs work too). An
unknown value is refused at the upgrade (422 ``bad_parameter``) with a message naming the
endpoint that lists the valid ones, as the seed's "connected but nothing" advice asks.

Every frame is one selection's new price, exactly the seed's object::

    {"bookmaker": "Sharpline", "match_name": "PSG - Lyon", "competition": "LIG1",
     "sport": "Football", "market_type": "moneyline", "selection": "PSG", "odds": 1.85,
     "period": 0, "is_live": false, "scraped_at": "2026-04-20T14:30:12Z"}

``odds`` is a JSON number, ``period`` an integer, ``is_live`` a boolean, ``scraped_at`` RFC
3339 UTC; a three-way result market is ``moneyline`` (the seed's "a moneyline with 3
outcomes"). A price that became suspended sends nothing (the frame has no field for it); the
next takeable price is sent when the book re-opens.

Keep-alive: the client's text frame ``ping`` is answered with the raw 4-byte text ``pong``
(not JSON: the seed's clients compare the text before parsing). Any other client frame is
ignored (the clients parse every server frame, so no error frame is ever sent); binary and
oversized frames close the connection (1003, 1009) like every WebSocket of the server. A
connection that sends nothing for :data:`IDLE_S` seconds (plus the server's pong timeout) is
closed with 4002, and a server shutdown closes every stream with 1001, so the seed's back-off
client fetches a new token and reconnects.

Filter cost: sport and competition narrow the hub channels (``odds:{sport}:{competition}``)
the connection subscribes to; a bookmaker is a hub attribute :class:`Filter`, interned, so
the fan-out evaluates it once per (message, filter) however many connections share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wagerwire.auth.identity import Identity
from wagerwire.core.channels import Filter
from wagerwire.core.messages import Message
from wagerwire.dialects.base import Directory, Session, StreamRequest, Subscribe
from wagerwire.dialects.payload import data_object
from wagerwire.errors import BadParameter, Unauthorized
from wagerwire.sources.sports_catalog import BOOKMAKERS, SPORTS, Bookmaker, SportSpec
from wagerwire.wire.websocket import text_frame

__all__ = [
    "ENCODER",
    "IDLE_S",
    "MARKET_TYPES",
    "MAX_VALUE_LENGTH",
    "OddsCatalog",
    "OddsFilters",
    "OddsStream",
    "OddsStreamSession",
    "PONG",
    "PriceEncoder",
    "default_catalog",
    "price_frame",
]

IDLE_S = 300.0
MAX_VALUE_LENGTH = 100
PONG = text_frame(b"pong")
MARKET_TYPES = {"1x2": "moneyline"}
"""The simulator's market types that OddsStream names differently."""

FRAME_KEYS = ("bookmaker", "match_name", "competition", "sport", "market_type", "selection",
              "odds", "period", "is_live", "scraped_at")


@dataclass(frozen=True, slots=True)
class OddsCatalog:
    """OddsStream's names for the simulator's slugs: sports, competition codes, bookmakers.

    ``sports``: slug → name (``football`` → ``Football``); ``competitions``: slug →
    ``(sport slug, code, name)`` (``epl`` → ``("football", "EPL", "Premier League")``);
    ``bookmakers``: slug → name. Slugs not in the catalogue keep their own spelling (a
    competition's code is then its slug upper-cased).
    """

    sports: Mapping[str, str]
    competitions: Mapping[str, tuple[str, str, str]]
    bookmakers: Mapping[str, str]

    @classmethod
    def of(cls, sports: Iterable[SportSpec], bookmakers: Iterable[Bookmaker]) -> OddsCatalog:
        sport_names: dict[str, str] = {}
        comps: dict[str, tuple[str, str, str]] = {}
        for spec in sports:
            sport_names[spec.slug] = spec.name
            for comp in spec.competitions:
                comps[comp.slug] = (spec.slug, comp.slug.upper(), comp.name)
        return cls(sport_names, comps, {b.slug: b.name for b in bookmakers})

    def sport_name(self, slug: str) -> str:
        return self.sports.get(slug, slug)

    def competition_code(self, slug: str) -> str:
        comp = self.competitions.get(slug)
        return comp[1] if comp is not None else slug.upper()

    def bookmaker_name(self, slug: str) -> str:
        return self.bookmakers.get(slug, slug)

    # -- query values (names, codes or slugs, any case) -> slugs -----------------------------

    def sport_slug(self, value: str) -> str:
        return _lookup(value, {**{s: s for s in self.sports},
                               **{n.lower(): s for s, n in self.sports.items()}},
                       "sport", "GET /api/sports lists the sport names")

    def competition_slug(self, value: str) -> str:
        return _lookup(value, {**{s: s for s in self.competitions},
                               **{c[1].lower(): s for s, c in self.competitions.items()}},
                       "competition", "GET /api/sports lists every sport's competition codes")

    def bookmaker_slug(self, value: str) -> str:
        return _lookup(value, {**{s: s for s in self.bookmakers},
                               **{n.lower(): s for s, n in self.bookmakers.items()}},
                       "bookmaker", "GET /api/bookmakers lists the bookmaker names")


def _lookup(value: str, table: Mapping[str, str], what: str, hint: str) -> str:
    slug = table.get(value.strip().lower())
    if slug is None:
        raise BadParameter(f"unknown {what} {value[:MAX_VALUE_LENGTH]!r}; {hint}")
    return slug


def default_catalog() -> OddsCatalog:
    """The catalogue of the built-in sports simulator."""
    return OddsCatalog.of(SPORTS, BOOKMAKERS)


def price_frame(data: Mapping[str, Any], catalog: OddsCatalog) -> dict[str, Any] | None:
    """The seed's object for one canonical OddsUpdate; None for anything else (or a
    suspended price)."""
    if data.get("suspended") is True:
        return None
    odds = data.get("odds")
    if isinstance(odds, bool) or not isinstance(odds, int | float):
        return None
    book, sport, comp = data.get("bookmaker"), data.get("sport"), data.get("competition")
    selection, market_type = data.get("selection"), data.get("market_type")
    if not all(isinstance(v, str) for v in (book, sport, comp, selection, market_type)):
        return None
    assert isinstance(book, str) and isinstance(sport, str) and isinstance(comp, str)
    assert isinstance(market_type, str)
    period = data.get("period")
    return {
        "bookmaker": catalog.bookmaker_name(book),
        "match_name": str(data.get("match_name") or data.get("event_id") or ""),
        "competition": catalog.competition_code(comp),
        "sport": catalog.sport_name(sport),
        "market_type": MARKET_TYPES.get(market_type, market_type),
        "selection": selection,
        "odds": odds,
        "period": period if isinstance(period, int) and not isinstance(period, bool) else 0,
        "is_live": data.get("is_live") is True,
        "scraped_at": str(data.get("scraped_at") or ""),
    }


class PriceEncoder:
    """A price change as one complete WebSocket text frame (``b""`` for anything else)."""

    __slots__ = ("catalog",)

    def __init__(self, catalog: OddsCatalog) -> None:
        self.catalog = catalog

    def encode(self, message: Message) -> bytes:
        obj = data_object(message.data)
        frame = None if obj is None else price_frame(obj, self.catalog)
        return b"" if frame is None else text_frame(orjson.dumps(frame))


ENCODER = PriceEncoder(default_catalog())


@dataclass(frozen=True, slots=True)
class OddsFilters:
    """The query's filters as slugs (None: not filtered on that)."""

    sport: str | None = None
    competition: str | None = None
    bookmaker: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str], catalog: OddsCatalog) -> OddsFilters:
        """Raises ``BadParameter`` for an over-long or unknown value (empty means no filter)."""
        values: dict[str, str | None] = {}
        for name in ("sport", "competition", "bookmaker"):
            raw = query.get(name)
            if raw is not None and len(raw) > MAX_VALUE_LENGTH:
                raise BadParameter(f"{name} is at most {MAX_VALUE_LENGTH} characters")
            values[name] = raw.strip() if raw is not None and raw.strip() else None
        sport, comp, book = values["sport"], values["competition"], values["bookmaker"]
        return cls(
            None if sport is None else catalog.sport_slug(sport),
            None if comp is None else catalog.competition_slug(comp),
            None if book is None else catalog.bookmaker_slug(book),
        )

    def channels(self, catalog: OddsCatalog) -> tuple[str, ...]:
        """The hub channels (or patterns) that carry every price these filters can match."""
        if self.competition is not None:
            comp_sport = catalog.competitions[self.competition][0]
            sport = self.sport if self.sport is not None else comp_sport
            return (f"odds:{sport}:{self.competition}",)  # never published if they disagree
        if self.sport is not None:
            return (f"odds:{self.sport}:*",)
        return ("odds:*",)

    def hub_filter(self) -> Filter | None:
        """The attribute filter the channels cannot express (the bookmaker)."""
        return None if self.bookmaker is None else Filter.parse({"bookmaker": self.bookmaker})


class OddsStream:
    """``/api/stream?token=&sport=&competition=&bookmaker=``: 401 missing, expired, tampered
    or spent token (only ``?token=`` authenticates), 403 a plan without streaming, 422 a bad
    filter value, 429 the plan's concurrent streams."""

    __slots__ = ("catalog", "encoder")
    transport: Literal["ws", "sse"] = "ws"

    def __init__(self, catalog: OddsCatalog | None = None) -> None:
        self.catalog = catalog if catalog is not None else default_catalog()
        self.encoder = ENCODER if catalog is None else PriceEncoder(self.catalog)

    def accept(self, request: StreamRequest, directory: Directory) -> OddsStreamSession:
        token = request.query_one("token")
        if not token:
            raise Unauthorized("missing ?token=; get a stream token from POST /api/stream/token")
        identity = directory.authenticate({}, token)
        if not identity.via_token:
            raise Unauthorized("?token= takes a stream token from POST /api/stream/token")
        filters = OddsFilters.parse(request.query, self.catalog)
        channels = tuple(directory.resolve_channel(identity, c)
                         for c in filters.channels(self.catalog))
        session = OddsStreamSession(identity, self.encoder, channels, filters.hub_filter())
        session.once = token.rsplit(".", 1)[-1]  # the signature: one stream per token
        return session


class OddsStreamSession(Session):
    """Subscribed at connect; ``ping`` → ``pong``; idle for :data:`IDLE_S` → closed."""

    __slots__ = ("channels", "filter")
    ping_interval = IDLE_S  # no WS pings: the transport closes after this long without data

    def __init__(
        self, identity: Identity, encoder: PriceEncoder, channels: tuple[str, ...],
        flt: Filter | None,
    ) -> None:
        super().__init__(identity, encoder)
        self.channels = channels
        self.filter = flt

    def start(self, now: float) -> None:
        self.emit(Subscribe(self.channels, filter=self.filter))

    def receive_text(self, text: str) -> None:
        if text == "ping":
            self.send(PONG)
