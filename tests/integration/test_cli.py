"""The command line: help, client commands against a real hub, configuration, clean shutdown."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wsutil import subscribe

from wagerwire.cli import build_parser
from wagerwire.config import Settings, load_settings
from wagerwire.errors import BadParameter, CloseCode

WAGERWIRE = [sys.executable, "-m", "wagerwire"]
SCRIPT = Path(sys.executable).with_name("wagerwire")  # the console script of the venv


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any WAGERWIRE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAGERWIRE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WAGERWIRE, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or _env(), cwd=cwd)


# --------------------------------------------------------------------------- help


def test_top_level_help_lists_the_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    for command in ("serve", "publish", "channels"):
        assert command in out.stdout
    assert "usage: wagerwire" in out.stdout
    bare = run_cli()
    assert bare.returncode == 2 and "usage:" in bare.stderr  # a command is required


SERVE_FLAGS = ["--host", "--port", "--store", "--broker", "--no-demo", "--demo-seed",
               "--demo-speed", "--config", "--log-level", "--max-channels",
               "--max-message-bytes", "--outbox-limit", "--ping-interval"]


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    raise AssertionError("no subcommands")


def test_serve_help_lists_and_explains_every_flag() -> None:
    out = run_cli("serve", "--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for flag in SERVE_FLAGS:
        assert flag in text, f"{flag} missing from serve --help"
    assert "WAGERWIRE_" in text and "TOML" in text  # the precedence is explained
    for action in _subparser("serve")._actions:
        if not action.option_strings or "--help" in action.option_strings:
            continue
        assert action.help and len(action.help) > 10, f"{action.option_strings} unexplained"
        assert any(opt in text for opt in action.option_strings)


def test_every_setting_has_a_serve_flag() -> None:
    """config.py: every Settings field can be set in TOML, in the environment and as a flag."""
    options = {opt for a in _subparser("serve")._actions for opt in a.option_strings}
    missing = []
    for f in fields(Settings):
        if f.name in ("retention", "plans", "pusher_apps", "sources",
                      "channel_policies"):  # tables: TOML, env JSON
            continue
        flag = "--" + f.name.replace("_", "-")
        negated = "--no-" + f.name.replace("_", "-")
        if flag not in options and negated not in options:
            missing.append(flag)
    assert not missing, f"settings without a serve flag: {missing}"


@pytest.mark.parametrize("command", ["publish", "channels"])
def test_client_commands_have_help(command: str) -> None:
    out = run_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "--url" in out.stdout and "--key" in out.stdout


# --------------------------------------------------------------------------- client commands


def test_publish_and_channels_against_a_running_server(server: Any) -> None:
    assert SCRIPT.exists(), "the wagerwire console script is not installed"
    out = subprocess.run([str(SCRIPT), "publish", "game:cli-a", '{"x": 1}', "--url", server.url],
                         capture_output=True, text=True, timeout=30, env=_env())
    assert out.returncode == 0, out.stderr
    ack = json.loads(out.stdout)
    assert (ack["channel"], ack["offset"], ack["duplicate"]) == ("game:cli-a", 1, False)
    assert ack["epoch"]

    again = run_cli("publish", "game:cli-a", "[1, 2]", "--url", server.url + "/")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["offset"] == 2

    for _ in range(2):
        idem = run_cli("publish", "game:cli-b", '"once"', "--url", server.url,
                       "--idempotency-key", "k-1")
        assert idem.returncode == 0, idem.stderr
    assert json.loads(idem.stdout)["offset"] == 1 and json.loads(idem.stdout)["duplicate"]

    history = httpx.get(f"{server.url}/v1/channels/game:cli-a/messages").json()
    assert [m["data"] for m in history["messages"]] == [{"x": 1}, [1, 2]]

    table = run_cli("channels", "--url", server.url)
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert set(lines) == {"game:cli-a", "game:cli-b"}
    assert ack["epoch"] in lines["game:cli-a"] and " 2" in lines["game:cli-a"]

    raw = run_cli("channels", "--url", server.url, "--json")
    assert raw.returncode == 0, raw.stderr
    by_name = {c["name"]: c for c in json.loads(raw.stdout)["channels"]}
    assert by_name["game:cli-a"]["last_offset"] == 2 and by_name["game:cli-b"]["last_offset"] == 1


def test_publish_errors_exit_non_zero_with_the_reason(server: Any) -> None:
    not_json = run_cli("publish", "game:cli-a", "{nope", "--url", server.url)
    assert not_json.returncode != 0
    assert "not JSON" in not_json.stderr and "Traceback" not in not_json.stderr

    bad_channel = run_cli("publish", "BAD CHANNEL", "1", "--url", server.url)
    assert bad_channel.returncode != 0
    assert "invalid_channel" in bad_channel.stderr and "Traceback" not in bad_channel.stderr

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    unreachable = run_cli("channels", "--url", dead)
    assert unreachable.returncode != 0
    assert "cannot reach" in unreachable.stderr and "Traceback" not in unreachable.stderr


# --------------------------------------------------------------------------- configuration


def test_config_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "ww.toml"
    toml.write_text('host = "0.0.0.0"\nport = 7001\nmax_channels = 7\nping_interval = 3.5\n'
                    'demo = false\nlog_level = "warning"\n')
    env = {"WAGERWIRE_PORT": "7002", "WAGERWIRE_MAX_CHANNELS": "8", "WAGERWIRE_DEMO": "yes"}

    defaults = load_settings(environ={})
    assert (defaults.host, defaults.port, defaults.demo, defaults.max_channels) == (
        "127.0.0.1", 8000, True, 100)

    from_file = load_settings(config_file=str(toml), environ={})
    assert (from_file.host, from_file.port, from_file.max_channels, from_file.ping_interval,
            from_file.demo, from_file.log_level) == ("0.0.0.0", 7001, 7, 3.5, False, "warning")

    env_over_file = load_settings(config_file=str(toml), environ=env)
    assert (env_over_file.host, env_over_file.port, env_over_file.max_channels,
            env_over_file.demo) == ("0.0.0.0", 7002, 8, True)

    flags = {"port": 7003, "demo": False, "host": None, "max_channels": None}  # None: not given
    flags_over_env = load_settings(flags, config_file=str(toml), environ=env)
    assert (flags_over_env.host, flags_over_env.port, flags_over_env.max_channels,
            flags_over_env.demo, flags_over_env.ping_interval) == ("0.0.0.0", 7003, 8, False, 3.5)

    via_env_path = load_settings(environ={"WAGERWIRE_CONFIG": str(toml)})
    assert via_env_path.port == 7001


def test_config_values_are_typed(tmp_path: Path) -> None:
    s = load_settings(environ={"WAGERWIRE_PING_INTERVAL": "0.5", "WAGERWIRE_DEMO": "off",
                               "WAGERWIRE_OUTBOX_LIMIT": "1024"})
    assert s.ping_interval == 0.5 and isinstance(s.ping_interval, float)
    assert s.demo is False
    assert s.outbox_limit == 1024 and isinstance(s.outbox_limit, int)
    for truthy in ("1", "true", "YES", "on"):
        assert load_settings(environ={"WAGERWIRE_DEMO": truthy}).demo is True


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"environ": {"WAGERWIRE_PORT": "eighty"}}, "port"),
        ({"environ": {"WAGERWIRE_DEMO": "maybe"}}, "demo"),
        ({"environ": {"WAGERWIRE_PING_INTERVAL": "soon"}}, "ping_interval"),
        ({"overrides": {"port": 70000}, "environ": {}}, "port"),
        ({"overrides": {"colour": "red"}, "environ": {}}, "colour"),
        ({"config_file": "/nonexistent/ww.toml", "environ": {}}, "/nonexistent/ww.toml"),
    ],
    ids=["env-int", "env-bool", "env-float", "port-range", "unknown", "missing-file"],
)
def test_load_settings_rejects_bad_values(kwargs: dict[str, Any], needle: str) -> None:
    overrides = kwargs.pop("overrides", None)
    with pytest.raises(BadParameter) as info:
        load_settings(overrides, **kwargs)
    assert needle in info.value.message


def _serve_fails(tmp_path: Path, args: list[str], env: dict[str, str] | None = None,
                 toml: str | None = None) -> tuple[int, str]:
    """Run ``serve``; return (exit code, output). A server that starts anyway is stopped and
    reported as started, so a missing check fails fast instead of hanging."""
    cmd = [*WAGERWIRE, "serve", "--store", f"sqlite:///{tmp_path / 'cfg.db'}"]
    tested = (" ".join(args) + " ".join(env or {}) + (toml or "")).lower()
    if "port" not in tested:  # flags win: only pin what the case does not set itself
        cmd += ["--port", "0"]
    if "demo" not in tested:
        cmd.append("--no-demo")
    if toml is not None:
        (tmp_path / "bad.toml").write_text(toml)
        cmd += ["--config", str(tmp_path / "bad.toml")]
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(**(env or {})), cwd=tmp_path)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening on" in line:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
            raise AssertionError(f"serve {args} {env or ''} started instead of refusing")
    code = proc.wait(timeout=30)
    proc.stdout.close()
    return code, "".join(lines)


@pytest.mark.parametrize(
    ("args", "env", "toml", "needle"),
    [
        (["--port", "70000"], None, None, "port"),
        ([], {"WAGERWIRE_PORT": "abc"}, None, "port"),
        ([], None, 'port = "abc"\n', "port"),
        ([], None, 'colour = "red"\n', "colour"),
        ([], None, "port = = 1\n", "config"),
        (["--config", "/nonexistent/ww.toml"], None, None, "/nonexistent/ww.toml"),
        ([], {"WAGERWIRE_DEMO": "maybe"}, None, "demo"),
        (["--store", "postgresql://db/ww"], None, None, "store"),
        (["--broker", "kafka://x"], None, None, "broker"),
        (["--log-level", "loud"], None, None, "log"),
        (["--ping-interval", "0"], None, None, "ping"),
        (["--ping-interval", "-1"], None, None, "ping"),
        (["--max-channels", "0"], None, None, "channels"),
        (["--max-message-bytes", "-5"], None, None, "message"),
        (["--outbox-limit", "-1"], None, None, "outbox"),
        (["--host", "999.1.1.1"], None, None, "999.1.1.1"),
    ],
    ids=["port-range", "env-port", "toml-port", "toml-unknown", "toml-syntax", "missing-file",
         "env-bool", "store-scheme", "broker-scheme", "log-level", "ping-zero", "ping-negative",
         "max-channels-zero", "max-message-negative", "outbox-negative", "bad-host"],
)
def test_bad_config_exits_non_zero_with_a_clear_message(
    tmp_path: Path, args: list[str], env: dict[str, str] | None, toml: str | None, needle: str
) -> None:
    code, output = _serve_fails(tmp_path, args, env, toml)
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "wagerwire:" in output, output
    assert needle.lower().replace("-", "_") in output.lower().replace("-", "_"), output


def test_port_in_use_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = _serve_fails(tmp_path, ["--port", str(port)])
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "wagerwire:" in output and str(port) in output, output


# --------------------------------------------------------------------------- shutdown


class _Publisher:
    """Reads a publisher connection's acks until the server closes it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.acked: dict[int, int] = {}  # i -> offset
        self.errors: list[dict[str, Any]] = []
        self.enough = asyncio.Event()

    async def run(self) -> Any:
        try:
            while True:
                frame = json.loads(await self.ws.recv())
                if frame["op"] == "published":
                    self.acked[int(frame["idempotency_key"][1:])] = frame["offset"]
                    if len(self.acked) >= 50:
                        self.enough.set()
                else:
                    self.errors.append(frame)
        except ConnectionClosed as exc:
            self.enough.set()
            return exc.rcvd


async def _read_messages(ws: Any, received: list[dict[str, Any]]) -> Any:
    """Collect message frames until the server closes; return its Close frame."""
    try:
        while True:
            frame = json.loads(await ws.recv())
            if frame["op"] == "message":
                received.append(frame)
    except ConnectionClosed as exc:
        return exc.rcvd


async def _read_sse(url: str, channel: str, started: asyncio.Event) -> bytes:
    body = b""
    async with httpx.AsyncClient(timeout=30) as http, http.stream(
        "GET", f"{url}/v1/sse", params={"channels": channel}
    ) as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_bytes():
            body += chunk
            if b"event: subscribed" in body:
                started.set()
    return body


async def _assert_resume_gets_the_rest(srv: Any, channel: str, last: dict[str, Any],
                                       head: int) -> None:
    ws, replies = await subscribe(srv.ws_url, [channel], since=last["token"])
    try:
        assert replies[0]["recovered"] is True
        got = list(getattr(ws, "pending", []))
        while len(got) < head - last["offset"]:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["op"] == "message":
                got.append(frame)
        assert [f["offset"] for f in got] == list(range(last["offset"] + 1, head + 1))
    finally:
        await ws.close()


async def test_sigterm_closes_clients_with_1001_and_keeps_acknowledged_messages(
    server_factory: Any,
) -> None:
    srv = server_factory()
    channel = "game:term-a"
    sub, _ = await subscribe(srv.ws_url, [channel])
    sse_started = asyncio.Event()
    sse_task = asyncio.create_task(_read_sse(srv.url, channel, sse_started))
    await asyncio.wait_for(sse_started.wait(), 10)
    publisher = _Publisher(await connect(srv.ws_url + "/v1/ws"))
    for i in range(400):
        await publisher.ws.send(json.dumps({"op": "publish", "channel": channel,
                                            "data": {"i": i}, "idempotency_key": f"k{i}"}))
    received: list[dict[str, Any]] = []
    pub_task = asyncio.create_task(publisher.run())
    sub_task = asyncio.create_task(_read_messages(sub, received))
    await asyncio.wait_for(publisher.enough.wait(), 30)

    exit_code = await asyncio.to_thread(srv.signal, signal.SIGTERM)  # signal it mid-stream
    pub_close, sub_close, sse_body = await asyncio.wait_for(
        asyncio.gather(pub_task, sub_task, sse_task), 30)

    assert exit_code == 0, "".join(srv.output)
    for close in (sub_close, pub_close):
        assert close is not None, "closed without a Close frame"
        assert close.code == CloseCode.GOING_AWAY == 1001
        assert "resume" in close.reason
    assert b"event: shutdown" in sse_body
    assert all(e["code"] == "unavailable" for e in publisher.errors), publisher.errors
    assert "Traceback" not in "".join(srv.output), "".join(srv.output)

    srv.restart()
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        page = (await http.get(f"/v1/channels/{channel}/messages",
                               params={"limit": 1000})).json()
    stored = {m["offset"]: m["data"] for m in page["messages"]}
    assert sorted(stored) == list(range(1, len(stored) + 1)), "offsets have holes"
    for i, offset in publisher.acked.items():
        assert stored.get(offset) == {"i": i}, f"acknowledged message {i} lost"
    for m in received:  # delivered implies durable
        assert stored.get(m["offset"]) == m["data"]
    if received:  # the close reason's hint holds: resume from the last token, no gap
        await _assert_resume_gets_the_rest(srv, channel, received[-1], len(stored))
