"""Helpers for the seed-dialect tests: an in-process server with a test key gate, the seeds'
own example clients as child processes (Node, and Python with the websockets they need), and
a TCP proxy that can cut connections mid-stream.

The server runs in the test's event loop so a test can publish straight into the hub and
create real API keys (users, plans) in its key store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from wagerwire.config import Settings
from wagerwire.node.features import default_features
from wagerwire.node.server import Server
from wagerwire.sources.casino import CasinoSimulator, GameSpec, demo_games

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "seeds"
NODE_DIR = ROOT / "tests" / "node"
SEED_HOST = "127.0.0.1:8000"  # what the seed copies point at; replaced by the live address
WEBSOCKETS_FOR_SEEDS = "websockets==13.1"  # the seeds' Python clients pass extra_headers=

GAMES: dict[str, GameSpec] = {spec.slug: spec for spec in demo_games()}


TEST_PLANS = {"stakeonly": {"channels": ["game:stake-*", "sports:*"]}}
#: name -> (role, plan, user): real API keys created in the server's key store per test.
TEST_KEYS: dict[str, tuple[str, str, str | None]] = {
    "key-demo-1": ("reader", "allstar", "demo-1"),
    "key-demo-2": ("reader", "allstar", "demo-2"),
    "key-stake-only": ("reader", "stakeonly", None),
    "key-reader": ("reader", "allstar", None),
}


class Live:
    """A started in-process server and the real API keys made for the test (by name)."""

    def __init__(self, server: Server, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys
        self.hub = server.hub
        self.port = server.port
        self.registry = server.registry

    def key(self, name: str) -> str:
        return self.keys[name]


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Live]:
    """A started in-process server (no demo sources, auth ``open``) with :data:`TEST_KEYS`."""
    settings = Settings(
        port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False, plans=TEST_PLANS,
        **overrides,
    )
    server = Server(settings, default_features)
    await server.start()
    keys = {name: server.gate.keystore.create(role, plan, user, name)[1]
            for name, (role, plan, user) in TEST_KEYS.items()}
    try:
        yield Live(server, keys)
    finally:
        await server.stop()


class Rounds:
    """Deterministic simulator rounds, published straight into a server's hub."""

    def __init__(self, server: Live, seed: int = 42) -> None:
        self.server = server
        self.sims = {slug: CasinoSimulator(spec, seed) for slug, spec in GAMES.items()}
        self.clock = 1_780_000_000_000

    async def publish(self, slug: str, count: int = 1) -> list[dict[str, Any]]:
        out = []
        spec = GAMES[slug]
        for _ in range(count):
            self.clock += 1000
            data = self.sims[slug].next_round(self.clock)
            await self.server.hub.publish(
                spec.channel, data, attrs=spec.attrs, idempotency_key=data["round_id"]
            )
            out.append(data)
        return out


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


async def subscribed(server: Live, channel: str, count: int = 1, timeout: float = 15.0) -> None:
    """Wait until ``channel`` has ``count`` local subscribers."""
    await wait_until(
        lambda: server.hub.local_subscriber_counts().get(channel, 0) >= count,
        timeout, f"{count} subscriber(s) on {channel}",
    )


# -- child processes ----------------------------------------------------------------------------


class Child:
    """A child process whose stdout lines are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process, cleanup: Path | None = None) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.cleanup = cleanup
        assert proc.stdout is not None
        self._pump = asyncio.get_running_loop().create_task(self._read(proc.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    async def wait_lines(self, pred: Callable[[list[str]], bool], timeout: float = 20.0,
                         what: str = "") -> list[str]:
        try:
            await wait_until(lambda: pred(self.lines), timeout, what)
        except AssertionError:
            raise AssertionError(f"{what}; output so far:\n" + "\n".join(self.lines)) from None
        return self.lines

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        if self.cleanup is not None:
            self.cleanup.unlink(missing_ok=True)


def seed_text(name: str, port: int, replacements: Mapping[str, str] | None = None) -> str:
    """A seed copy with the host (and keys) replaced; the only edits the tests make."""
    text = (SEEDS / name).read_text()
    assert SEED_HOST in text, f"{name} must point at {SEED_HOST}"
    text = text.replace(SEED_HOST, f"127.0.0.1:{port}")
    for old, new in (replacements or {}).items():
        assert old in text, f"{old!r} not in {name}"
        text = text.replace(old, new)
    return text


def node_available() -> None:
    """Install tests/node's packages (npm ci) when node_modules is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are required for the seed JavaScript clients")
    if not (NODE_DIR / "node_modules" / "ws").is_dir() or not (
        NODE_DIR / "node_modules" / "eventsource"
    ).is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=NODE_DIR, check=True, timeout=300)


async def run_node(source: str, suffix: str = ".mjs", preload: str | None = None,
                   env: Mapping[str, str] | None = None) -> Child:
    """Run JavaScript ``source`` as an ES module (``suffix=".cjs"``: CommonJS) that resolves
    tests/node's packages; ``preload`` is CommonJS run first (``node --require``); ``env``
    replaces the environment (e.g. with ``NODE_EXTRA_CA_CERTS``)."""
    node_available()
    run_dir = NODE_DIR / "node_modules" / ".wagerwire-seed-run"  # inside the ignored tree
    run_dir.mkdir(exist_ok=True)
    path = run_dir / f"{uuid.uuid4().hex}{suffix}"
    path.write_text(source)
    args = [str(path)]
    if preload is not None:
        hook = run_dir / f"{path.stem}-preload.cjs"
        hook.write_text(preload)
        args = ["--require", str(hook), *args]
    proc = await asyncio.create_subprocess_exec(
        "node", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=NODE_DIR, env=None if env is None else dict(env),
    )
    return Child(proc, path)


SEED_DEPS = Path(sys.prefix) / "seed-websockets-13"  # beside the venv, not in pytest's cache


def seed_python_path(_cache: object = None) -> Path:
    """A directory holding the websockets version the seeds' Python clients were written for
    (``make install-test`` installs it; installed here on first use otherwise)."""
    target = SEED_DEPS
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "websockets" / "legacy").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--target", str(target), WEBSOCKETS_FOR_SEEDS],
            check=True, timeout=300,
        )
    return target


async def run_python(source: str, tmp_path: Path, deps: Path,
                     env: Mapping[str, str] | None = None) -> Child:
    """Run Python ``source`` with ``deps`` (websockets 13.1) first on the path, in ``env``
    (default: this process's environment; e.g. with ``SSL_CERT_FILE``)."""
    path = tmp_path / f"seed_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    env = dict(os.environ if env is None else env, PYTHONPATH=str(deps), PYTHONUNBUFFERED="1",
               PYTHONIOENCODING="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=tmp_path, env=env,
    )
    return Child(proc)


# -- a proxy that can drop every connection -----------------------------------------------------


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to the server; :meth:`cut` drops every connection and
    refuses new ones until :meth:`heal` (what a network outage looks like to a client)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refusing = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        self._writers |= {client_w, up_w}
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        for w in (client_w, up_w):
            self._writers.discard(w)
            w.transport.abort()

    def cut(self) -> None:
        self.refusing = True
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self.refusing = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        dst.transport.abort()
