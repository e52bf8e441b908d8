"""Real Redis and PostgreSQL servers for tests: loopback only, free ports, temporary dirs.

Each server is a child process of the test run, started by these helpers and stopped by PID
in teardown; nothing else on the machine is touched. Tests that need one skip when the
binary is missing (``make system-deps`` installs both).

``RedisServer`` restarts on the same port (the Redis-outage tests rely on it); it keeps no
data across restarts (``--save '' --appendonly no``), like a Redis that lost its memory.
``PostgresServer`` runs ``initdb`` and ``postgres`` as the ``postgres`` user when the tests
run as root (PostgreSQL refuses to run as root), with trust auth on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

__all__ = [
    "PostgresServer",
    "PrometheusServer",
    "RedisServer",
    "SentinelGroup",
    "free_port",
    "postgres_bin",
    "prometheus_bin",
    "redis_bin",
]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str,
               host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def redis_bin() -> str | None:
    return shutil.which("redis-server")


def prometheus_bin() -> str | None:
    return shutil.which("prometheus")


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class RedisServer:
    """One ``redis-server`` child on 127.0.0.1 (or ``host``, an address of a network the test
    made); ``restart()`` keeps the port, loses the data."""

    def __init__(self, directory: Path, port: int | None = None,
                 extra_args: tuple[str, ...] = (), host: str = "127.0.0.1") -> None:
        binary = redis_bin()
        if binary is None:
            raise RuntimeError("redis-server is not installed (make system-deps)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.host = host
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
             "--protected-mode", "yes" if self.host == "127.0.0.1" else "no",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_port(self.port, self.proc, 10, "redis-server", self.host)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()


class SentinelGroup:
    """A Redis primary, one replica and ``count`` Sentinels (``redis-server --sentinel``,
    which needs no Debian ``redis-sentinel`` package), all on 127.0.0.1 free ports.

    The Sentinels watch the primary as ``service`` with a short ``down_after_ms``, so that
    killing it (:meth:`kill_primary`) promotes the replica within a few seconds. ``url`` is the
    ``redis+sentinel://`` URL of the group.
    """

    def __init__(self, directory: Path, *, count: int = 3, service: str = "ww",
                 down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.service = service
        self.down_after_ms = down_after_ms
        self.primary = RedisServer(directory / "primary")
        self.replica = RedisServer(
            directory / "replica",
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)),
        )
        self.sentinel_ports = [free_port() for _ in range(count)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        quorum = len(self.sentinel_ports) // 2 + 1
        for i, port in enumerate(self.sentinel_ports):
            folder = self.directory / f"sentinel{i}"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"  # Sentinel rewrites it: it must be writable
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {folder}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            log = open(folder / "sentinel.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen([self.primary.binary, str(config), "--sentinel"],
                                    stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.sentinels.append(proc)
            _wait_port(port, proc, 10, "redis sentinel")
        self.wait_replica_synced()
        return self

    @staticmethod
    def _ask(port: int, ask: Callable[[Any], T]) -> T:
        """``ask(client)`` with a short-lived client of the server on ``port``."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2,
                             decode_responses=True)
        try:
            return ask(client)
        finally:
            client.close()

    def wait_replica_synced(self, timeout: float = 20) -> None:
        """Wait until the replica has finished its first sync and every Sentinel knows it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                info = self._ask(self.replica.port, lambda c: c.info("replication"))
                known = [
                    {int(r["port"]) for r in self._ask(p, lambda c: c.sentinel_slaves(
                        self.service))}
                    for p in self.sentinel_ports
                ]
                if info.get("master_link_status") == "up" and all(
                        self.replica.port in k for k in known):
                    return
            time.sleep(0.1)
        raise RuntimeError("the replica did not sync or Sentinel did not see it in time")

    def primary_port(self, sentinel: int = 0) -> int:
        """The primary's port as Sentinel ``sentinel`` reports it now."""
        address = self._ask(self.sentinel_ports[sentinel],
                            lambda c: c.sentinel_get_master_addr_by_name(self.service))
        return int(address[1])

    def kill_primary(self) -> None:
        """SIGKILL the primary (no shutdown, no last write to the replica)."""
        self.primary.kill()

    def wait_promoted(self, timeout: float = 30) -> None:
        """Wait until every Sentinel names the replica as the primary and it says so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                ports = {self.primary_port(i) for i in range(len(self.sentinel_ports))}
                role = self._ask(self.replica.port, lambda c: c.execute_command("ROLE"))
                if ports == {self.replica.port} and role[0] == "master":
                    return
            time.sleep(0.1)
        raise RuntimeError("Sentinel did not promote the replica in time")

    def stop(self) -> None:
        for proc in self.sentinels:
            _stop(proc)
        self.sentinels.clear()
        self.replica.kill()
        self.primary.kill()


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only (or on
    ``host`` too, an address of a network the test made, trusting that /24)."""

    def __init__(self, directory: Path, *, fsync: bool = False, host: str = "127.0.0.1"
                 ) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make system-deps)")
        self.bindir = bindir
        self.directory = directory
        self.port = free_port()
        self.fsync = fsync
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def _user_kwargs(self) -> dict[str, Any]:
        """Run the child as the server's user itself (not under runuser, which would not
        pass our signals on), so stopping it by PID stops PostgreSQL."""
        if not self._user:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
                "env": {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}}

    def start(self) -> PostgresServer:
        data = self.directory / "data"
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            # The server's user must be able to reach its directory.
            for parent in self.directory.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if not data.exists():
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                cwd=self.directory, **self._user_kwargs(),
            )
            if self.host != "127.0.0.1":
                net = ".".join(self.host.split(".")[:3]) + ".0/24"
                with open(data / "pg_hba.conf", "a") as hba:
                    hba.write(f"host all all {net} trust\n")
        listen = "127.0.0.1" if self.host == "127.0.0.1" else f"127.0.0.1,{self.host}"
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", listen, "-k", str(self.directory),
             "-c", f"fsync={'on' if self.fsync else 'off'}",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, **self._user_kwargs(),
        )
        log.close()
        _wait_port(self.port, self.proc, 30, "postgres")
        # Accepting TCP is not yet accepting logins: wait for a real query.
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(
                [str(self.bindir / "psql"), self.url(), "-qAtc", "select 1"],
                capture_output=True,
            )
            if done.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready: {done.stderr.decode()}")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # "fast" shutdown
        self.proc = None

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bindir / "psql"), self.url(database), "-qAtc", sql],
            capture_output=True, check=True,
        )
        return done.stdout.decode()


S = TypeVar("S", RedisServer, PostgresServer)


def _session_server(server_class: type[S], installed: bool, name: str, prefix: str
                    ) -> Iterator[S]:
    """Start a server in a fresh temporary directory; stop it and remove the directory after."""
    if not installed:
        pytest.skip(f"{name} is not installed (make system-deps)")
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    server = server_class(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session; tests isolate themselves with key prefixes or databases."""
    yield from _session_server(RedisServer, redis_bin() is not None, "redis-server", "ww-redis-")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; tests isolate themselves with schemas."""
    yield from _session_server(PostgresServer, postgres_bin() is not None, "PostgreSQL", "ww-pg-")


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL for one test only (for tests that stop and start it)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (make system-deps)")
    server = PostgresServer(tmp_path / "pg").start()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis for one test only (for tests that kill or restart it)."""
    if redis_bin() is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


class PrometheusServer:
    """Debian's ``prometheus`` on 127.0.0.1, scraping ``targets`` every second, with its
    config and TSDB in a temporary directory."""

    def __init__(self, directory: Path, targets: list[str]) -> None:
        binary = prometheus_bin()
        if binary is None:
            raise RuntimeError("prometheus is not installed (make system-deps)")
        self.binary = binary
        self.directory = directory
        self.targets = targets
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        targets = ", ".join(f'"{t}"' for t in self.targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: wagerwire\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )
        log = open(self.directory / "prometheus.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}",
             f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
        )
        log.close()
        _wait_port(self.port, self.proc, 30, "prometheus")
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
