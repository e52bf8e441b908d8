"""Command line: ``wagerwire serve | publish | channels | keys | apps | tail | sources``.

Thin on purpose: parse flags, set up logging, call into :mod:`wagerwire.node` or the REST API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from wagerwire.config import load_settings
from wagerwire.errors import WagerwireError
from wagerwire.logs import setup_logging

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8000"


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the hub",
        description="Run the hub: REST, WebSocket and SSE on one port. Flags override "
        "WAGERWIRE_* environment variables, which override the TOML config file.",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000; 0 = any free)")
    p.add_argument("--store", help="history store URL (default sqlite:///wagerwire.db)")
    p.add_argument("--broker", help="broker URL (default memory://, one process; "
                   "redis://host:port/0 or redis+sentinel://host:port,…/service for many)")
    p.add_argument("--workers", type=int,
                   help="worker processes sharing the port, each with its own event loop "
                   "(default 1; more than 1 needs --broker redis://… and --store "
                   "postgresql://…)")
    p.add_argument("--no-demo", dest="demo", action="store_const", const=False,
                   help="do not run the built-in casino and sports simulators")
    p.add_argument("--demo", dest="demo", action="store_const", const=True,
                   help="run the simulators even if the config or environment turns them off")
    p.add_argument("--demo-seed", type=int, help="seed of the simulators (default 42)")
    p.add_argument("--demo-speed", type=float,
                   help="simulator speed factor; 2 = twice as many rounds (default 1)")
    p.add_argument("--config", help="TOML config file (keys are the setting names)")
    p.add_argument("--log-level", help="debug, info, warning or error (default info)")
    p.add_argument("--log-format", choices=["plain", "json"],
                   help="plain lines or one JSON object per line, with connection and "
                   "request ids (default plain)")
    p.add_argument("--max-channels", type=int,
                   help="channels one connection may subscribe to (default 100)")
    p.add_argument("--max-message-bytes", type=int,
                   help="largest message data accepted, in bytes (default 65536)")
    p.add_argument("--outbox-limit", type=int,
                   help="bytes queued for one client before it is cut as a slow consumer "
                   "(default 4 MiB)")
    p.add_argument("--ping-interval", type=float,
                   help="seconds between server WebSocket pings (default 20)")
    p.add_argument("--auth", choices=["open", "required"],
                   help="open: anonymous clients read public channels (default); "
                   "required: every stream and REST call needs a key or token")
    p.add_argument("--token-ttl", type=int, help="stream token lifetime in seconds (300)")
    p.add_argument("--stake-origins",
                   help="comma-separated Origin values the Stake WebSocket accepts "
                   "(exact, re:<regex> or *; default: the Stake dialect's own list)")
    p.add_argument("--keys-db", help="SQLite file for API keys instead of the store's own "
                   "database (default: the SQLite store's file, or PostgreSQL's tables: "
                   "every node then shares the keys)")
    p.add_argument("--no-demo-keys", dest="demo_keys", action="store_const", const=False,
                   help="do not create the demo reader/publisher keys on first start")
    p.add_argument("--max-body-bytes", type=int,
                   help="largest REST request body, in bytes (default 1 MiB)")
    p.add_argument("--header-timeout", type=float,
                   help="seconds for a whole request head, and for an idle keep-alive "
                   "connection's next one (default 10; 408 past it)")
    p.add_argument("--body-timeout", type=float,
                   help="seconds for a request body once its head is in (default 30; 408)")
    p.add_argument("--pong-timeout", type=float,
                   help="extra seconds without traffic after a ping before close 4002 "
                   "(default 20)")
    p.add_argument("--sse-heartbeat", type=float,
                   help="seconds between SSE comment heartbeats (default 15)")
    p.add_argument("--idempotency-window", type=float,
                   help="seconds an idempotency key is remembered (default 300)")
    p.add_argument("--idempotency-window-bytes", type=int,
                   help="bytes the idempotency window may hold; oldest keys go first "
                   "(default 16 MiB)")
    p.add_argument("--parse-cache-bytes", type=int,
                   help="bytes the URL subscription parse caches may hold (default 1 MiB)")
    p.add_argument("--anonymous-publish", dest="anonymous_publish", action="store_const",
                   const=True, help="let clients without a key publish when auth is open "
                   "(off by default: any web page could publish into this hub)")
    p.add_argument("--no-anonymous-publish", dest="anonymous_publish", action="store_const",
                   const=False, help="refuse publishing without a publisher key (default)")
    p.add_argument("--node-id", help="this node's name on the dashboard and in /metrics "
                   "(default: host:port-pid)")
    p.add_argument("--pusher-max-connections", type=int,
                   help="Pusher connections this node accepts; beyond, close 4100 "
                   "(default 0: no limit)")
    p.add_argument("--run-connectors", dest="run_connectors", action="store_const", const=True,
                   help="run the upstream connector sources on this node (default)")
    p.add_argument("--no-run-connectors", dest="run_connectors", action="store_const",
                   const=False, help="do not run connector sources here (another node does); "
                   "sources can still be added and removed through this node")
    p.add_argument("--connector-checkpoint", type=float,
                   help="seconds between saves of each upstream connector's position (1.0)")
    p.add_argument("--webtransport", dest="webtransport", action="store_const", const=True,
                   help="also serve WebTransport (HTTP/3, UDP): /wt, /wt/{game}, /v1/wt")
    p.add_argument("--webtransport-port", type=int,
                   help="UDP port of the WebTransport listener (default 4433)")
    p.add_argument("--retention-count", type=int,
                   help="messages kept per channel (default 100000)")
    p.add_argument("--retention-age", type=float,
                   help="maximum age of kept messages, in seconds (default 7 days)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="serve https:// and wss:// with this certificate chain (leaf first; "
                   "reloaded when it changes, and on SIGHUP)")
    p.add_argument("--tls-key", metavar="PEM",
                   help="the certificate's private key (default: in the --tls-cert file)")
    p.add_argument("--tls-dev", dest="tls_dev", action="store_const", const=True,
                   help="serve TLS with a generated ECDSA P-256 certificate valid 13 days, "
                   "rotated before expiry; its hash is at GET /v1/tls/certificate-hashes")
    p.add_argument("--tls-dev-dir", metavar="DIR",
                   help="keep the generated certificate here (default: a temporary directory)")
    p.add_argument("--tls-reload-interval", type=float, metavar="SECONDS",
                   help="seconds between checks of the certificate files (default 5)")


def _client_parser(sub: Any) -> None:
    p = sub.add_parser("publish", help="publish one message through a running hub",
                       description="POST /v1/publish on a running hub.")
    p.add_argument("channel", help="channel name, e.g. game:crash")
    p.add_argument("data", help="JSON value to publish, e.g. '{\"x\":1}'")
    p.add_argument("--url", default=DEFAULT_URL, help=f"hub base URL (default {DEFAULT_URL})")
    p.add_argument("--key", help="API key (sent as Authorization: Bearer)")
    p.add_argument("--idempotency-key", help="retries with the same key publish once")
    c = sub.add_parser("channels", help="list channels of a running hub",
                       description="GET /v1/channels on a running hub.")
    c.add_argument("--url", default=DEFAULT_URL, help=f"hub base URL (default {DEFAULT_URL})")
    c.add_argument("--key", help="API key (sent as Authorization: Bearer)")
    c.add_argument("--json", action="store_true", help="print the raw JSON")


def _keys_parser(sub: Any) -> None:
    k = sub.add_parser(
        "keys", help="create, list and revoke API keys",
        description="Manage API keys in the store's database (SQLite file, or PostgreSQL: "
        "then every node shares them). Works with the servers stopped; running servers "
        "close a revoked key's streams at once (PostgreSQL) or within seconds (SQLite).",
    )
    k.add_argument("--store", help="store URL whose database holds the keys")
    k.add_argument("--keys-db", help="SQLite file for keys instead of the store's database")
    k.add_argument("--config", help="TOML config file")
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key (printed once)")
    c.add_argument("--role", required=True, choices=["reader", "publisher", "admin"],
                   help="reader streams and reads; publisher also publishes; admin manages keys")
    c.add_argument("--plan", required=True,
                   help="plan name (free, pro, pro+, pro+rt, pro+live, allstar, ...)")
    c.add_argument("--prefix", default="ww_", choices=["ww_", "os_live_"],
                   help="key prefix: os_live_ for OddsStream clients, which check for it")
    c.add_argument("--user", help="bind the key to a user id (private user:{id}:... channels)")
    c.add_argument("--name", help="a label for listings")
    c.add_argument("--json", action="store_true", help='print {"id":…,"key":…}')
    ks.add_parser("list", help="list keys (never the keys themselves)").add_argument(
        "--json", action="store_true", help="print JSON")
    r = ks.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id", help="key id (the part after ww_)")
    i = ks.add_parser("import", help="copy keys, signing keys and stored apps of a SQLite "
                      "keys file into the PostgreSQL store (those not there yet)")
    i.add_argument("file", help="SQLite file, e.g. wagerwire-keys.db")


def _keys(args: argparse.Namespace) -> int:
    from wagerwire.auth.plans import parse_plans
    from wagerwire.node.backends import build_keystore

    settings = load_settings({"store": args.store, "keys_db": args.keys_db},
                             config_file=args.config)
    store = build_keystore(settings)
    try:
        if args.keys_command == "create":
            plans = parse_plans(settings.plans)
            if args.plan not in plans:
                print(f"wagerwire: unknown plan {args.plan!r}; plans: "
                      f"{', '.join(sorted(plans))}", file=sys.stderr)
                return 2
            record, key = store.create(args.role, args.plan, args.user, args.name,
                                       prefix=args.prefix)
            if args.json:
                print(json.dumps({"id": record.id, "key": key}))
            else:
                print(f"created key {record.id} ({args.role}, plan {args.plan}"
                      f"{', user ' + args.user if args.user else ''}):\n{key}\n"
                      "store it now: it is not shown again")
        elif args.keys_command == "import":
            return _import_keys(store, args.file)
        elif args.keys_command == "list":
            records = [r.public() for r in store.list()]
            if args.json:
                print(json.dumps(records))
            for r in [] if args.json else records:
                state = "revoked" if r["revoked_at"] else "active"
                print(f"{r['id']:14} {r['role']:10} {r['plan']:10} {r['user_id'] or '-':12} "
                      f"{state:8} {r['name'] or ''}")
        else:
            if not store.revoke(args.id):
                print(f"wagerwire: no active key {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
        return 0
    finally:
        store.close()


def _import_keys(store: Any, path: str) -> int:
    from wagerwire.auth.keys import KeyStore

    if not hasattr(store, "import_rows"):
        print("wagerwire: keys import copies into a PostgreSQL store: give --store "
              "postgresql://…", file=sys.stderr)
        return 2
    if not os.path.exists(path):
        print(f"wagerwire: no file {path}", file=sys.stderr)
        return 2
    source = KeyStore(path)
    try:
        keys, signing, apps = store.import_rows(*source.export_rows())
    finally:
        source.close()
    print(f"imported {keys} key(s), {signing} signing key(s), {apps} app(s)")
    return 0


def _apps_parser(sub: Any) -> None:
    a = sub.add_parser(
        "apps", help="Pusher apps: create, list and delete apps, or print a config table",
        description="Pusher apps come from the config ([pusher_apps.ID] tables) and from the "
        "key store (`create`: in the store's database, shared by every node when it is "
        "PostgreSQL; running servers pick new apps up within seconds). `new` prints a "
        "table with a random key and secret to paste in the config; `list` shows both kinds "
        "(never their secrets).",
    )
    a.add_argument("--config", help="TOML config file")
    a.add_argument("--store", help="store URL whose database holds the apps")
    a.add_argument("--keys-db", help="SQLite file for keys and apps instead of the store's")
    s = a.add_subparsers(dest="apps_command", required=True)
    n = s.add_parser("new", help="print a [pusher_apps.ID] table with a new key and secret")
    n.add_argument("app_id", help="app id: 1-40 of [a-z0-9_.-] (part of hub channel names)")
    n.add_argument("--json", action="store_true", help='print {"app_id","key","secret"}')
    c = s.add_parser("create", help="store a new app (key and secret printed once)")
    c.add_argument("app_id", help="app id: 1-40 of [a-z0-9_.-] (part of hub channel names)")
    c.add_argument("--plan", default="open", help="wagerwire plan of its connections")
    c.add_argument("--no-client-events", dest="client_events", action="store_false",
                   help="refuse client-* events")
    c.add_argument("--webhook-url", help="where webhook batches are POSTed")
    c.add_argument("--json", action="store_true", help='print {"app_id","key","secret"}')
    d = s.add_parser("delete", help="delete a stored app")
    d.add_argument("app_id")
    s.add_parser("list", help="list the configured and stored apps").add_argument(
        "--json", action="store_true", help="print JSON")


def _apps(args: argparse.Namespace) -> int:
    from wagerwire.dialects.pusher_apps import apps_from_config, new_app
    from wagerwire.dialects.pusher_names import valid_app_id

    if args.apps_command in ("new", "create") and not valid_app_id(args.app_id):
        print("wagerwire: app id must be 1-40 characters of [a-z0-9_.-]", file=sys.stderr)
        return 2
    if args.apps_command == "new":
        app = new_app(args.app_id)
        if args.json:
            print(json.dumps({"app_id": app.app_id, "key": app.key, "secret": app.secret}))
        else:
            print(f'[pusher_apps.{app.app_id}]\nkey = "{app.key}"\nsecret = "{app.secret}"')
        return 0
    settings = load_settings({"store": args.store, "keys_db": args.keys_db},
                             config_file=args.config)
    if args.apps_command in ("create", "delete"):
        return _stored_apps(args, settings)
    listed: list[dict[str, Any]] = [{"app_id": a.app_id, "key": a.key}
                                    for a in apps_from_config(settings.pusher_apps)]
    if _has_keystore(settings):
        from wagerwire.node.backends import build_keystore

        store = build_keystore(settings)
        try:
            listed += [{"app_id": r.app_id, "key": r.key, "stored": True}
                       for r in store.apps() if not r.builtin]
        finally:
            store.close()
    if args.json:
        print(json.dumps(listed))
    for item in [] if args.json else listed:
        print(f"{item['app_id']:20} key {item['key']}"
              f"{'  (stored)' if item.get('stored') else ''}")
    return 0


def _has_keystore(settings: Any) -> bool:
    """Whether there is a key store to read (a SQLite file is not created just to list)."""
    if settings.store.startswith(("postgresql:", "postgres:")) and not settings.keys_db:
        return True
    return os.path.exists(settings.keys_path())


def _stored_apps(args: argparse.Namespace, settings: Any) -> int:
    from wagerwire.auth.keys import AppRecord
    from wagerwire.dialects.pusher_apps import new_app
    from wagerwire.node.backends import build_keystore

    store = build_keystore(settings)
    try:
        if args.apps_command == "delete":
            if not store.delete_app(args.app_id):
                print(f"wagerwire: no stored app {args.app_id}", file=sys.stderr)
                return 1
            print(f"deleted app {args.app_id}")
            return 0
        if args.webhook_url and not args.webhook_url.startswith(("http://", "https://")):
            print("wagerwire: --webhook-url must be an http(s) URL", file=sys.stderr)
            return 2
        made = new_app(args.app_id)
        record = store.create_app(AppRecord(made.app_id, made.key, made.secret, args.plan,
                                            args.client_events, webhook_url=args.webhook_url))
        if args.json:
            print(json.dumps({"app_id": record.app_id, "key": record.key,
                              "secret": record.secret}))
        else:
            print(f"created app {record.app_id}: key {record.key} secret {record.secret}\n"
                  "store the secret now: `apps list` never shows it")
        return 0
    finally:
        store.close()


def _tail_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tail",
        help="print messages of channels as they arrive",
        description="Follow channels (exact names or * patterns) of a running hub. Messages go "
        "to stdout, one per line; reconnects and the resume command (on Ctrl-C) to stderr.",
    )
    p.add_argument("channels", nargs="+", metavar="CHANNEL",
                   help="channel or pattern, e.g. game:crash 'odds:football:*'")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="TOKEN",
                       help="resume token: continue after the position it names")
    start.add_argument("--from-start", action="store_true",
                       help="replay every channel from its oldest kept message, then follow")
    p.add_argument("--filter", action="append", default=[], metavar="K=V",
                   help="attribute filter; repeat for more terms, repeat a key for any-of "
                   "(--filter bookmaker=pinnacle --filter bookmaker=bet365)")
    p.add_argument("--json", action="store_true",
                   help="print each message as one JSON object per line")
    p.add_argument("--url", default=os.environ.get("WAGERWIRE_URL", DEFAULT_URL),
                   help=f"hub base URL (default $WAGERWIRE_URL or {DEFAULT_URL})")
    p.add_argument("--key", default=os.environ.get("WAGERWIRE_KEY"),
                   help="API key or stream token (default $WAGERWIRE_KEY); an API key is "
                   "exchanged for short-lived stream tokens")
    p.add_argument("--transport", choices=["ws", "sse", "wt"], default="ws",
                   help="WebSocket (default), server-sent events or WebTransport (HTTP/3)")
    p.add_argument("--webtransport-url", metavar="URL",
                   help="with --transport wt: the WebTransport endpoint (default "
                   "https://<host of --url>:4433/v1/wt)")
    p.add_argument("--ca", metavar="PEM",
                   help="CA certificate(s) to trust for https://, wss:// and WebTransport")
    p.add_argument("--cert-hash", action="append", default=[], metavar="SHA256",
                   help="with --transport wt: trust the certificate with this SHA-256 (hex or "
                   "base64; repeat for more), or 'served': the hash the server publishes at "
                   "/v1/tls/certificate-hashes (a development certificate)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wagerwire",
        description="Real-time hub for casino-game and sports-betting data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _client_parser(sub)
    _keys_parser(sub)
    _apps_parser(sub)
    _tail_parser(sub)
    _sources_parser(sub)
    return parser


def _sources_parser(sub: Any) -> None:
    s = sub.add_parser(
        "sources", help="list, add or remove upstream sources of a running node",
        description="Upstream connectors of a running node, through its admin REST route "
                    "(/v1/sources; an admin key is needed).")
    s.add_argument("--url", default=os.environ.get("WAGERWIRE_URL", DEFAULT_URL),
                   help=f"hub base URL (default $WAGERWIRE_URL or {DEFAULT_URL})")
    s.add_argument("--key", default=os.environ.get("WAGERWIRE_KEY"),
                   help="admin API key (default $WAGERWIRE_KEY)")
    ss = s.add_subparsers(dest="sources_command", required=True)
    ls = ss.add_parser("list", help="every source with its health")
    ls.add_argument("--json", action="store_true", help="print the raw JSON")
    a = ss.add_parser("add", help="start a source (kept in the store: it starts again with the node)")
    a.add_argument("name", help="1-40 of [a-z0-9_.-]")
    a.add_argument("source_url", metavar="URL", help="the upstream's base URL")
    a.add_argument("--dialect", required=True, help="native, trackersino, datastream, …")
    a.add_argument("--credentials", help="upstream API key / token")
    a.add_argument("--subscribe", action="append", default=[], metavar="WHAT",
                   help="a subscription (repeatable), e.g. 'game:*' or 'stake-crash'")
    a.add_argument("--group", default="", help="failover group (same data, deduplicated)")
    a.add_argument("--start", choices=["earliest", "latest"], default="earliest")
    a.add_argument("--option", action="append", default=[], metavar="K=V",
                   help="a dialect option (repeatable); V is parsed as JSON when it can be")
    r = ss.add_parser("remove", help="stop a source")
    r.add_argument("name")


def _sources(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/") + "/v1/sources"
    if args.sources_command == "list":
        result = _request(base, args.key)
        if args.json:
            print(json.dumps(result))
            return 0
        for src in result["sources"]:
            h = src["health"]
            if h is None:  # another worker runs it, or it is stopped until the next start
                print(f"{src['name']:20} {src['dialect']:15} {'(not here)':12}")
                continue
            print(f"{src['name']:20} {src['dialect']:15} {h['state']:12} msgs {h['messages']:>8}"
                  f"  gaps {h['gaps_found']}/{h['gaps_filled']}/{h['gaps_unfillable']}"
                  f"  {h['error'] or ''}")
        return 0
    if args.sources_command == "remove":
        print(json.dumps(_request(f"{base}/{args.name}", args.key, method="DELETE")))
        return 0
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"wagerwire: --option {item!r} is not K=V")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    body = {"name": args.name, "url": args.source_url, "dialect": args.dialect,
            "credentials": args.credentials, "subscriptions": args.subscribe,
            "group": args.group, "start": args.start, "options": options}
    print(json.dumps(_request(base, args.key, body)))
    return 0


def _request(url: str, key: str | None, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"wagerwire: {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise SystemExit(f"wagerwire: cannot reach {url}: {exc.reason}") from exc


SERVER_EXTRA_HINT = ("wagerwire serve needs the server's dependencies: "
                     "pip install 'wagerwire[server]' (missing: {})")


def _serve(args: argparse.Namespace) -> int:
    try:
        from wagerwire.node.features import default_features
        from wagerwire.node.workers import serve
    except ModuleNotFoundError as exc:  # the SDK-only install has no server extra
        raise SystemExit(SERVER_EXTRA_HINT.format(exc.name)) from exc

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    settings = load_settings(overrides, config_file=args.config)
    setup_logging(settings.log_level, settings.log_format)
    return serve(settings, default_features)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "keys":
            return _keys(args)
        if args.command == "apps":
            return _apps(args)
        if args.command == "sources":
            return _sources(args)
        if args.command == "tail":
            from wagerwire.client import tail

            return tail.run(args)
        if args.command == "publish":
            try:
                data = json.loads(args.data)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"wagerwire: data is not JSON: {exc}") from exc
            body = {"channel": args.channel, "data": data}
            if args.idempotency_key:
                body["idempotency_key"] = args.idempotency_key
            print(json.dumps(_request(args.url.rstrip("/") + "/v1/publish", args.key, body)))
            return 0
        result = _request(args.url.rstrip("/") + "/v1/channels", args.key)
        if args.json:
            print(json.dumps(result))
        else:
            for ch in result["channels"]:
                print(f"{ch['name']:40} epoch {ch['epoch']:10} offset {ch['last_offset']:>8}"
                      f"  retained {ch['count']}")
        return 0
    except WagerwireError as exc:
        print(f"wagerwire: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
