"""The OddsStream row of the shared kit: per-connection tokens and filters, price templates.

The kit's generator opens every subscriber with one fixed path and expects every message at
every subscriber. OddsStream needs neither: each connection has its own single-use token and
its own filters, and a price reaches only the subscribers whose filters match it. With
bench/gen-groups.patch applied to the kit's copy of gen.c (bench/run_oddsstream.sh does it),
gen reads

* ``-U FILE``: one line per subscriber, ``<templates it matches> <path>``, e.g.
  ``3,10,17 /api/stream?token=wwt1…&sport=Football&bookmaker=Sharpline``;
* ``-G FILE``: the publisher's templates, one per (sport, competition, bookmaker) cell of the
  simulator's catalogue (63): a native ``publish`` of one price on
  ``odds:{sport}:{competition}`` with the ``bookmaker`` attribute, gen's payload carried as the
  ``match_name`` string (``%SPAYLOAD%``), so the OddsStream frame keeps gen's markers; the
  event, market and selection ids stay the same per cell, as a feed's repeated prices do.

Message ``s`` uses template ``s mod 63``; gen expects it at exactly the subscribers whose filters
match that cell, and counts the window, loss and gaps on them alone.

Subscribers hold the same 100 filter combinations as bench/oddsstream_fanout.py (seeded
shuffle of every valid sport × competition × bookmaker combination, subscriber ``i`` gets
combination ``i mod 100``). Tokens are minted here, before the server starts, with the store's
own signing key, exactly as ``POST /api/stream/token`` signs them (5 minutes, a nonce each,
key on plan ``pro+rt``): the benchmark measures the fan-out, not token issuance, and 10,000
HTTP round trips per run would only slow it down. Each is still single-use: the server spends
it at the upgrade.

Usage (bench/oddsstream_stack.sh calls ``tokens`` before it starts the server)::

    oddsstream_kit.py templates OUT
    oddsstream_kit.py tokens --db HUB.DB --count 10000 --out PATHS
    oddsstream_kit.py native-paths --count 10000 --out PATHS   # the native filtered control
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oddsstream_fanout import combos  # noqa: E402  (bench/ is not a package)

from wagerwire.auth.keys import KeyStore  # noqa: E402
from wagerwire.auth.stream_tokens import TOKEN_TTL_S, TokenClaims, sign_token  # noqa: E402
from wagerwire.dialects.oddsstream import OddsFilters, default_catalog  # noqa: E402

PLAN = "pro+rt"  # streaming, no daily token quota, no stream limit


def cells() -> list[tuple[str, str, str]]:
    """Every (sport, competition, bookmaker) slug triple of the catalogue, in a fixed order."""
    cat = default_catalog()
    return [(sport, comp, book)
            for comp, (sport, _, _) in cat.competitions.items() for book in cat.bookmakers]


def template(sport: str, comp: str, book: str) -> str:
    """gen's publish text for one cell; ``%SPAYLOAD%`` becomes gen's payload as a string."""
    data = {"bookmaker": book, "match_name": "%SPAYLOAD%", "competition": comp, "sport": sport,
            "market_type": "1x2", "selection": "Home", "odds": 2.1, "period": 0,
            "is_live": True, "scraped_at": "2026-12-07T03:00:00Z",
            # one event and market per cell, as a feed's repeated prices have (the hub's
            # price table keys on them; without them every price would be a new event)
            "event_id": f"bench-{comp}", "market_id": "1x2", "selection_id": "home"}
    op = {"op": "publish", "channel": f"odds:{sport}:{comp}",
          "attrs": {"sport": sport, "competition": comp, "bookmaker": book}, "data": data}
    return orjson.dumps(op).decode()


def matching(flt: OddsFilters, table: list[tuple[str, str, str]]) -> list[int]:
    """The templates (cell numbers) a subscriber with these filters receives."""
    return [k for k, (sport, comp, book) in enumerate(table)
            if flt.sport in (None, sport) and flt.competition in (None, comp)
            and flt.bookmaker in (None, book)]


def query(flt: OddsFilters) -> dict[str, str]:
    """The filters as the page's clients write them: names and codes, not slugs."""
    cat = default_catalog()
    out: dict[str, str] = {}
    if flt.sport is not None:
        out["sport"] = cat.sport_name(flt.sport)
    if flt.competition is not None:
        out["competition"] = cat.competition_code(flt.competition)
    if flt.bookmaker is not None:
        out["bookmaker"] = cat.bookmaker_name(flt.bookmaker)
    return out


def write_atomically(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


def write_templates(out: Path) -> None:
    write_atomically(out, [template(*cell) for cell in cells()])


def write_tokens(db: Path, count: int, out: Path) -> None:
    store = KeyStore(str(db))
    try:
        record, _ = store.create("reader", PLAN, None, "bench", prefix="os_live_")
        keys = store.signing_keys()
        kid = store.current_signing_kid()
    finally:
        store.close()
    table = cells()
    filters = combos()
    now = int(time.time())
    lines = []
    for i in range(count):
        flt = filters[i % len(filters)]
        claims = TokenClaims(record.id, record.role, PLAN, None, now, now + TOKEN_TTL_S,
                             secrets.token_urlsafe(9))
        params = {"token": sign_token(claims, kid, keys[kid]), **query(flt)}
        wanted = ",".join(str(k) for k in matching(flt, table))
        lines.append(f"{wanted} /api/stream?{urlencode(params)}")
    write_atomically(out, lines)


def write_native_paths(count: int, out: Path) -> None:
    """The control row: the same filters as native subscriptions in the URL (``/v1/ws?
    channels=…&filter=…``), no token, native frames; the same templates reach them."""
    cat = default_catalog()
    table = cells()
    filters = combos()
    lines = []
    for i in range(count):
        flt = filters[i % len(filters)]
        params = {"channels": ",".join(flt.channels(cat))}
        if flt.bookmaker is not None:
            params["filter"] = orjson.dumps({"bookmaker": flt.bookmaker}).decode()
        wanted = ",".join(str(k) for k in matching(flt, table))
        lines.append(f"{wanted} /v1/ws?{urlencode(params)}")
    write_atomically(out, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("templates")
    t.add_argument("out", type=Path)
    k = sub.add_parser("tokens")
    k.add_argument("--db", type=Path, required=True)
    k.add_argument("--count", type=int, default=10_000)
    k.add_argument("--out", type=Path, required=True)
    n = sub.add_parser("native-paths")
    n.add_argument("--count", type=int, default=10_000)
    n.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "templates":
        write_templates(args.out)
    elif args.cmd == "native-paths":
        write_native_paths(args.count, args.out)
    else:
        write_tokens(args.db, args.count, args.out)


if __name__ == "__main__":
    main()
