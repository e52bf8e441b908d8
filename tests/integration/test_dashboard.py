"""The live dashboard at ``/`` in a real browser: Debian's Chromium, headless, driven by
``tests/browser/dashboard.mjs`` (playwright-core) against a real server with the demo on.

The script checks the page (no console errors, live rounds, odds board, verify, hub panel,
keyboard, both viewports) and reports JSON lines; between its two phases this side SIGKILLs
the server and restarts it on the same port and SQLite file, and the page must recover by
itself and show what it missed. Screenshots land in ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverproc import ROOT, ServerProcess
from servers import free_port
from wagerwire.dashboard.routes import ASSETS

BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def browser_ready() -> None:
    """Chromium must be installed (``make system-deps``); npm packages are installed here."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are required to drive the browser (playwright-core)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=BROWSER_DIR, check=True, timeout=300)


class Script:
    """The Node script as a child process, read line by line with timeouts."""

    def __init__(self, url: str) -> None:
        env = dict(os.environ, WW_URL=url, WW_ARTIFACTS=str(ARTIFACTS), CHROMIUM=CHROMIUM)
        self.proc = subprocess.Popen(
            ["node", "dashboard.mjs"], cwd=BROWSER_DIR, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._pump, daemon=True),
                        threading.Thread(target=self._pump_err, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def next(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the script prints (non-JSON lines are kept in the log)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("browser script silent:\n" + self.transcript())
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("browser script ended early:\n" + self.transcript())
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj

    def until(self, key: str, timeout: float) -> dict[str, Any]:
        """Skip progress lines until one with ``key`` (an await or the result)."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.next(max(0.1, deadline - time.monotonic()))
            if key in obj or "result" in obj:
                return obj

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def transcript(self) -> str:
        return "".join(self.log[-40:]) + "".join(self.errors[-40:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for thread in self.threads:  # both pipes reach EOF once the process is gone
            thread.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def test_dashboard_assets_are_public_and_local(server: ServerProcess) -> None:
    """The page and its assets are served by the hub, auth-free and outside OpenAPI."""
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.css", "favicon.svg"):
        assert name in ASSETS
        asset = httpx.get(f"{server.url}/static/{name}")
        assert asset.status_code == 200, name
        again = httpx.get(f"{server.url}/static/{name}",
                          headers={"if-none-match": asset.headers["etag"]})
        assert again.status_code == 304
    assert httpx.get(server.url + "/static/nope.js").status_code == 404
    assert httpx.get(server.url + "/static/..%2Fapp.py").status_code == 404
    for name, shipped in ASSETS.items():  # nothing is fetched from outside the hub
        text = shipped.body.decode()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


@pytest.mark.timeout(180)
def test_dashboard_in_chromium(server_factory: Any, tmp_path: Path) -> None:
    browser_ready()
    # One configured upstream source for the Sources table: the hub itself, relaying a
    # channel nobody publishes (connected, and nothing relayed into what the page checks).
    port = free_port()
    config = tmp_path / "sources.toml"
    config.write_text(
        f'[[sources]]\nname = "self"\nurl = "http://127.0.0.1:{port}"\ndialect = "native"\n'
        'subscriptions = ["quiet:nothing"]\noptions = { max_backoff = 1.0 }\n')
    srv: ServerProcess = server_factory(["--demo", "--demo-speed", "10", "--port", str(port),
                                         "--config", str(config)])
    script = Script(srv.url)
    try:
        obj = script.until("await", 90)
        assert obj.get("await") == "killed", script.transcript()
        srv.kill()  # SIGKILL: no goodbye frame; the page must notice by itself
        script.send("killed")
        obj = script.until("await", 60)
        assert obj.get("await") == "restarted", script.transcript()
        srv.restart()
        script.send("restarted")
        obj = script.until("result", 60)
    finally:
        script.close()
    result = obj["result"]
    (ARTIFACTS / "result.json").write_text(json.dumps(result, indent=1))
    failed = {name: c["detail"] for name, c in result["checks"].items() if not c["ok"]}
    assert not failed, json.dumps(failed, indent=1)
    for name in ("page_served", "connected", "rounds_update", "crash_chips_coloured",
                 "double_colours", "slot_reels", "histogram_and_stats", "verify_valid",
                 "events_listed", "odds_best_highlighted", "implied_probabilities",
                 "arbitrage_flag_consistent", "hub_panel", "hub_server_panel", "hub_nodes",
                 "sources_table", "keyboard_navigation",
                 "phone_no_horizontal_scroll", "no_console_errors", "no_foreign_requests",
                 "shows_reconnecting", "reconnect_countdown", "resumed_after_restart",
                 "rounds_continue_without_gap", "resume_count_matches_hub",
                 "no_unexpected_errors_in_outage"):
        assert name in result["checks"], f"check {name} did not run"
    assert result["checks"]["resumed_after_restart"]["detail"]["count"] > 0
    for path in result["screenshots"]:
        assert Path(path).stat().st_size > 10_000, path
