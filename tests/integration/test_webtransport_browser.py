"""WebTransport in headless Chromium (Debian's, via playwright-core): the seed's datagram
reader loop and its graceful-degradation connect (WebTransport → WebSocket → SSE), with
``serverCertificateHashes`` as the only change, and a native /v1/wt session that drops and
resumes with no gap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from dialect_harness import SEEDS, Child, Live, Rounds, subscribed
from test_dashboard import BROWSER_DIR, CHROMIUM, browser_ready
from test_webtransport import CERT, wt_port, wt_server

pytestmark = pytest.mark.timeout(180)

SEED_URL = "'https://127.0.0.1:4433/wt'"
HASHES = "{serverCertificateHashes: [{algorithm: 'sha-256', value: window.CERT_HASH}]}"


def seed_sections() -> dict[str, str]:
    """The seed copy's sections by title (cut at its ``// --- title`` lines)."""
    text = (SEEDS / "datastream_wt.js").read_text()
    parts = re.split(r"^// --- (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def with_host(code: str, port: int) -> str:
    """The host replaced and the certificate hash added: the only changes."""
    assert SEED_URL in code
    return code.replace(SEED_URL, f"'https://127.0.0.1:{port}/wt', {HASHES}")


async def page(live: Live, mode: str, script: str = "", wt: int = 0) -> Child:
    browser_ready()
    env = dict(os.environ, WW_PORT=str(live.port), WW_WT_PORT=str(wt or wt_port(live)),
               WW_CERT_HASH=CERT.sha256.hex(), WW_SCRIPT=script, CHROMIUM=CHROMIUM)
    proc = await asyncio.create_subprocess_exec(
        "node", "webtransport.mjs", mode, cwd=BROWSER_DIR, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    return Child(proc)


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


def resumed(lines: list[str]) -> list[dict[str, Any]]:
    return [o for o in parsed(lines) if o.get("session") == 2 and "message" in o]


def datagrams(lines: list[str]) -> list[dict[str, Any]]:
    return [o["args"][1] for o in parsed(lines)
            if o.get("console") == "log" and o["args"][:1] == ["Datagram:"]]


async def publish_until(child: Child, rounds: Rounds, slug: str, pred: Any,
                        what: str) -> list[str]:
    for _ in range(300):
        if pred(child.lines):
            return child.lines
        await rounds.publish(slug)
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}; output so far:\n" + "\n".join(child.lines))


async def test_the_seed_datagram_reader_loop_in_chromium(tmp_path: Path) -> None:
    sections = seed_sections()
    async with wt_server(tmp_path) as live:
        code = with_host(sections["WebTransport > Connection"], wt_port(live))
        script = "(async () => {\n" + code + sections["WebTransport > Datagrams"] + "\n})()"
        child = await page(live, "seed", script)
        try:
            await subscribed(live, "game:crash", timeout=60)
            lines = await publish_until(child, Rounds(live), "crash",
                                        lambda ls: len(datagrams(ls)) >= 3,
                                        "three rounds read by the seed's loop")
            got = datagrams(lines)
            assert all(r["game_slug"] == "crash" and isinstance(r["extras"], str) for r in got)
            assert set(got[0]) == {"round_id", "game_id", "game_slug", "game_type",
                                   "finished_at", "extras", "timestamp"}
            assert not [o for o in parsed(lines) if "pageerror" in o or "evalerror" in o]
        finally:
            await child.stop()


def closed_port(kind: int) -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def degradation_script(wt: int, ws: int, http: int) -> str:
    """The seed's connect() verbatim, over connect functions the seed leaves to the reader
    (its own Connection snippets wrapped; WebSocket/SSE on /…/crash)."""
    sections = seed_sections()
    connection = with_host(sections["WebTransport > Connection"], wt)
    return f"""(async () => {{
async function connectWebTransport() {{
{connection}
return wt;
}}
function connectWebSocket() {{
  return new Promise((resolve, reject) => {{
    const ws = new WebSocket('ws://127.0.0.1:{ws}/ws/crash');
    ws.onopen = () => resolve(ws);
    ws.onerror = (e) => reject(new Error('websocket failed'));
    ws.onmessage = (event) => window.report({{ via: 'websocket', round: JSON.parse(event.data) }});
  }});
}}
function connectSSE() {{
  const sse = new EventSource('http://127.0.0.1:{http}/sse/crash');
  for (const name of ['initial', 'message']) {{
    sse.addEventListener(name, (e) => window.report({{ via: 'sse', round: JSON.parse(e.data) }}));
  }}
  return sse;
}}
{sections["Best Practices > 5. Graceful Degradation"]}
const conn = await connect();
window.report({{ connected: conn.constructor.name }});
if (conn instanceof WebTransport) {{
  const reader = conn.datagrams.readable.getReader();
  for (;;) {{
    const {{ value, done }} = await reader.read();
    if (done) break;
    window.report({{ via: 'webtransport', round: JSON.parse(new TextDecoder().decode(value)) }});
  }}
}}
}})()"""


@pytest.mark.parametrize("down", ["nothing", "webtransport", "webtransport+websocket"])
async def test_the_seed_graceful_degradation_connect(tmp_path: Path, down: str) -> None:
    expect = {"nothing": ("WebTransport", "webtransport"),
              "webtransport": ("WebSocket", "websocket"),
              "webtransport+websocket": ("EventSource", "sse")}[down]
    async with wt_server(tmp_path) as live:
        wt = closed_port(socket.SOCK_DGRAM) if "webtransport" in down else wt_port(live)
        ws = closed_port(socket.SOCK_STREAM) if "websocket" in down else live.port
        child = await page(live, "seed", degradation_script(wt, ws, live.port), wt=wt)
        try:
            await child.wait_lines(lambda ls: any('"connected"' in x for x in ls), timeout=90,
                                   what="connect() settled")
            connected = [o["connected"] for o in parsed(child.lines) if "connected" in o]
            assert connected == [expect[0]]
            lines = await publish_until(
                child, Rounds(live), "crash",
                lambda ls: any(o.get("via") == expect[1] for o in parsed(ls)),
                f"a round over {expect[1]}")
            rounds = [o["round"] for o in parsed(lines) if o.get("via") == expect[1]]
            assert rounds[0]["game_slug"] == "crash"
        finally:
            await child.stop()


async def test_a_native_session_in_chromium_drops_and_resumes_with_no_gap(
        tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live:
        child = await page(live, "native")
        try:
            await subscribed(live, "game:crash", timeout=60)
            for n in range(1, 4):
                await live.hub.publish("game:crash", {"n": n})
            await child.wait_lines(lambda ls: any('"dropped"' in x for x in ls), timeout=60,
                                   what="the page dropped its session after 3 messages")
            for n in range(4, 7):  # published while the page has no session
                await live.hub.publish("game:crash", {"n": n})
            assert child.proc.stdin is not None
            child.proc.stdin.write(b"resume\n")
            await child.proc.stdin.drain()
            await child.wait_lines(
                lambda ls: len(resumed(ls)) >= 3,
                timeout=60, what="the resumed session replayed what it missed")
            await live.hub.publish("game:crash", {"n": 7})
            lines = await child.wait_lines(
                lambda ls: len(resumed(ls)) >= 4,
                timeout=60, what="the live message after the replay")
            got = parsed(lines)
            messages = [(o["message"]["n"], o["offset"]) for o in got if "message" in o]
            assert messages == [(n, n) for n in range(1, 8)]
            replies = [o["reply"] for o in got if o.get("session") == 2 and "reply" in o]
            assert replies[0]["op"] == "subscribed" and replies[0]["recovered"] is True
            assert not [o for o in got if "pageerror" in o or "error" in o]
            # a restart closes the session with 1001 and the resume hint, as the page sees it
            await live.server.stop()
            lines = await child.wait_lines(
                lambda ls: any(o.get("session") == 2 and "closed" in o for o in parsed(ls)),
                timeout=60, what="the page saw its session closed")
            [closed] = [o["closed"] for o in parsed(lines)
                        if o.get("session") == 2 and "closed" in o]
            assert closed["closeCode"] == 1001 and "resume" in closed["reason"]
        finally:
            await child.stop()
