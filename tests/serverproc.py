"""A real wagerwire server process on 127.0.0.1, on a free port (used by the fixtures)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WAGERWIRE = [sys.executable, "-m", "wagerwire"]
BANNER = re.compile(r"listening on (https?)://[0-9.]+:(\d+)")


class ServerProcess:
    """One ``wagerwire serve`` child process; restartable on the same store file."""

    def __init__(self, workdir: Path, args: list[str] | None = None, *,
                 host: str = "127.0.0.1", wrap: list[str] | None = None) -> None:
        """``host``: the address it listens on and is reached at; ``wrap``: a command
        prefix it runs under (``ip netns exec NS``: a host of its own)."""
        self.workdir = workdir
        self.host = host
        self.wrap = wrap or []
        self.db = workdir / "hub.db"
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.scheme = "http"  # https with --tls-cert / --tls-dev
        self.output: list[str] = []
        self._pump: threading.Thread | None = None  # copies the output into ``output``

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}:{self.port}"

    def start(self, port: int | None = None, timeout: float = 30.0) -> ServerProcess:
        cmd = [*self.wrap, *WAGERWIRE, "serve", "--port",
               str(port if port is not None else self.port), "--store", f"sqlite:///{self.db}",
               *self.args]
        if self.host != "127.0.0.1":
            cmd += ["--host", self.host]
        if not any(a.startswith("--demo") or a == "--no-demo" for a in self.args):
            cmd.append("--no-demo")
        if not any(a.endswith("anonymous-publish") for a in self.args):
            cmd.append("--anonymous-publish")  # most tests publish without a key
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # A session of its own, so kill() reaches worker processes too (--workers N).
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True,
        )
        found = threading.Event()
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                m = BANNER.search(line)
                if m and not found.is_set():
                    self.scheme, self.port = m.group(1), int(m.group(2))
                    found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # liveness only: whether the certificate is trusted is the tests' business
                if httpx.get(self.url + "/healthz", timeout=2, verify=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server not healthy:\n" + "".join(self.output))

    def wait_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output, waiting for it: lines printed after
        the banner (the demo keys) may still be on their way through the pipe."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, "".join(self.output))
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the output:\n" + "".join(self.output))
            time.sleep(0.02)

    def signal(self, sig: int) -> int:
        """Send ``sig`` and wait for the process to exit; returns its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        try:  # workers outliving their supervisor would hold the output pipe open
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap()
        return code

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.stdout is not None:
            # the whole session is gone: the pump reads the last lines, then end of file
            if self._pump is not None:
                self._pump.join(timeout=5)
            proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL the server and every process of its session (workers included)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._reap()

    def restart(self, timeout: float = 30.0) -> ServerProcess:
        return self.start(self.port, timeout)
