"""``wagerwire tail``: follow channels of a running hub from the terminal.

One line per message on stdout (``--json``: one JSON object per line), status lines on stderr
when the stream drops and comes back, and on Ctrl-C (or SIGTERM) a clean exit 0 with the
command that continues exactly after the last printed message::

    resume with: wagerwire tail game:crash --since Z2FtZTpjcmFzaCxrM3g5cTJhYiw0Mg

It is the SDK's :class:`~wagerwire.client.Client` underneath, so it reconnects with backoff,
resumes without gap or duplicate, renews stream tokens and backfills over REST by itself.
Its flags are declared in :mod:`wagerwire.cli`, which imports this module (and with it the
SDK) only when the command runs: ``serve`` does not load the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:
    from wagerwire.client import ClientMessage, Subscription

__all__ = ["parse_filter", "run"]

DEFAULT_URL = "http://127.0.0.1:8000"


def parse_filter(terms: Sequence[str]) -> dict[str, str | list[str]] | None:
    """``["bookmaker=a", "bookmaker=b", "sport=football"]`` → ``{"bookmaker": ["a", "b"], …}``.

    Raises:
        ValueError: a term is not ``key=value``.
    """
    out: dict[str, list[str]] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"--filter wants key=value, not {term!r}")
        out.setdefault(key, [])
        if value not in out[key]:
            out[key].append(value)
    if not out:
        return None
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def format_line(msg: ClientMessage, as_json: bool) -> str:
    """One output line for ``msg``."""
    from wagerwire.core.tokens import encode_position

    if as_json:
        obj: dict[str, Any] = {
            "channel": msg.channel, "offset": msg.offset, "epoch": msg.epoch, "ts": msg.ts,
            "data": msg.data, "source": msg.source,
            "token": encode_position(msg.channel, msg.epoch, msg.offset),
        }
        if msg.attrs:
            obj["attrs"] = dict(msg.attrs)
        return orjson.dumps(obj).decode()
    when = datetime.datetime.fromtimestamp(msg.ts / 1000).strftime("%H:%M:%S.%f")[:-3]
    mark = "" if msg.source == "live" else f" ({msg.source})"
    data = orjson.dumps(msg.data).decode()
    return f"{when} {msg.channel} #{msg.offset}{mark} {data}"


def resume_command(args: argparse.Namespace, token: str) -> str:
    """The command line that continues after ``token`` with the same options (not the key)."""
    parts = ["wagerwire", "tail", *args.channels]
    for term in args.filter:
        parts += ["--filter", term]
    if args.json:
        parts.append("--json")
    if args.url != os.environ.get("WAGERWIRE_URL", DEFAULT_URL):
        parts += ["--url", args.url]
    if args.transport != "ws":
        parts += ["--transport", args.transport]
    if getattr(args, "webtransport_url", None):
        parts += ["--webtransport-url", args.webtransport_url]
    if getattr(args, "ca", None):
        parts += ["--ca", args.ca]
    for pin in getattr(args, "cert_hash", None) or []:
        parts += ["--cert-hash", pin]
    parts += ["--since", token]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run ``tail`` until Ctrl-C (exit 0), a fatal error (exit 1) or bad arguments (exit 2)."""
    try:
        flt = parse_filter(args.filter)
    except ValueError as exc:
        print(f"wagerwire tail: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_tail(args, flt, sys.stdout, sys.stderr))
    except KeyboardInterrupt:  # Ctrl-C before the handler was in place
        return 130


def _status(err: TextIO, text: str) -> None:
    print(f"wagerwire tail: {text}", file=err, flush=True)


async def _tail(
    args: argparse.Namespace,
    flt: Mapping[str, str | list[str]] | None,
    out: TextIO,
    err: TextIO,
) -> int:
    from wagerwire.client import Client, ClientError

    handler = logging.StreamHandler(err)  # lost-history warnings from the SDK
    handler.setFormatter(logging.Formatter("wagerwire tail: %(message)s"))
    sdk_log = logging.getLogger("wagerwire.client")
    sdk_log.addHandler(handler)
    sdk_log.setLevel(logging.WARNING)
    sdk_log.propagate = False
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sub: Subscription | None = None
    code = 0
    try:
        pins = getattr(args, "cert_hash", None) or None
        async with Client(args.url, key=args.key, transport=args.transport,
                          webtransport_url=getattr(args, "webtransport_url", None),
                          ca=getattr(args, "ca", None),
                          cert_hashes="served" if pins == ["served"] else pins) as client:
            since = args.since
            if args.from_start:
                since = await client.start_token(args.channels)
            sub = client.subscribe(args.channels, filter=flt, since=since)
            printer = asyncio.create_task(_print(sub, args.json, out))
            watcher = asyncio.create_task(_watch(sub, err))
            stopper = asyncio.create_task(stop.wait())
            tasks = (printer, watcher, stopper)
            try:
                done, _ = await asyncio.wait(
                    {printer, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if printer in done:
                    printer.result()  # the fatal ClientError that ended the stream, if any
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    except ClientError as exc:
        _status(err, f"{type(exc).__name__}: {exc}")
        code = 1
    except BrokenPipeError:
        # stdout went away (`| head`): nothing more to print anywhere useful.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ValueError as exc:  # a bad URL
        _status(err, str(exc))
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    token = sub.resume_token if sub is not None else args.since
    if token:
        print(f"resume with: {resume_command(args, token)}", file=err, flush=True)
    elif code == 0:
        _status(err, "nothing received yet; run the same command again to start live")
    return code


async def _print(sub: Subscription, as_json: bool, out: TextIO) -> None:
    async for msg in sub:
        # Printed (and flushed) in the same step as it is taken: the resume token printed on
        # Ctrl-C covers exactly the lines on the screen.
        out.write(format_line(msg, as_json) + "\n")
        out.flush()


async def _watch(sub: Subscription, err: TextIO) -> None:
    from wagerwire.client import Connected, Disconnected

    lost = False
    async for state in sub.states():
        if isinstance(state, Disconnected):
            lost = True
            wait = max(0.0, state.next_retry_at - asyncio.get_running_loop().time())
            _status(err, f"disconnected ({state.reason}); reconnecting in {wait:.1f}s")
        elif isinstance(state, Connected) and lost:
            lost = False
            _status(err, f"reconnected; resumed from {sub.resume_token or 'the live edge'}")
