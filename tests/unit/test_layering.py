"""The layering of the package, checked on its imports (STYLE.md conventions 1 and 4).

- core/ imports, of wagerwire, only core/, errors and types, and no adapter library;
- the sans-I/O layers (core/ but hub.py, which the rest of core/ does not import, wire/, dialects/, the SDK's protocol modules) import
  no asyncio, socket or clock: time comes in as ``now``;
- wire/ and dialects/ import neither the asyncio hub nor transports/ nor the composition root;
- api/ and dashboard/ never import the composition root (node/);
- the connectors' decoding, gap detection and health (connectors/ but runner, clients and the
  per-dialect sessions) are sans-I/O: no asyncio, clock, adapter library, SDK driver or hub;
- tls/ (certificates, the TLS context) imports only itself and no web library; its certs.py
  takes bytes and ``now`` and touches no file;
- nothing in core/ or auth/ talks to Redis directly (auth/ states the Limits contract; the Redis
  implementation lives beside the Redis broker).

The test also proves it can fail: a forbidden import added to a copy of a module is reported.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import wagerwire

SRC = Path(wagerwire.__file__).resolve().parent

ADAPTER_LIBRARIES = frozenset({
    "redis", "asyncpg", "fastapi", "starlette", "pydantic", "httptools", "uvloop", "websockets",
    "httpx", "aioquic", "prometheus_client",
})
IO_AND_CLOCK = frozenset({
    "asyncio", "socket", "selectors", "ssl", "threading", "time", "datetime",
    "wagerwire.types.now_ms",
})
CONNECTORS_SANS_IO = ("connectors/sources.py", "connectors/model.py", "connectors/normalise.py",
                      "connectors/gaps.py", "connectors/health.py")
SDK_SANS_IO = ("client/protocol.py", "client/actions.py", "client/states.py",
               "client/messages.py", "client/errors.py", "client/backoff.py")


@dataclass(frozen=True, slots=True)
class Rule:
    """Modules under ``where`` (relative paths or folder prefixes) may not import ``forbids``."""

    name: str
    where: tuple[str, ...]
    forbids: frozenset[str]
    except_in: tuple[str, ...] = ()
    allowed_wagerwire: tuple[str, ...] | None = None  # when set: the only wagerwire imports

    def applies_to(self, rel: str) -> bool:
        inside = any(rel == w or rel.startswith(w) for w in self.where)
        return inside and rel not in self.except_in


RULES = (
    Rule("core imports only core, errors and types", ("core/",), ADAPTER_LIBRARIES,
         allowed_wagerwire=("wagerwire.core", "wagerwire.errors", "wagerwire.types")),
    Rule("sans-I/O core reads no clock and does no I/O", ("core/",),
         IO_AND_CLOCK | {"wagerwire.core.hub"}, except_in=("core/hub.py",)),
    Rule("wire/ is sans-I/O", ("wire/",), IO_AND_CLOCK | ADAPTER_LIBRARIES),
    Rule("dialects/ are sans-I/O sessions", ("dialects/",),
         IO_AND_CLOCK | ADAPTER_LIBRARIES
         | {"wagerwire.core.hub", "wagerwire.transports", "wagerwire.node"}),
    Rule("wire/ knows no hub, transport or node", ("wire/",),
         frozenset({"wagerwire.core.hub", "wagerwire.transports", "wagerwire.node",
                    "wagerwire.dialects"})),
    Rule("the SDK's protocol modules are sans-I/O", SDK_SANS_IO, IO_AND_CLOCK),
    Rule("the connectors' decoding, gap and health logic is sans-I/O", CONNECTORS_SANS_IO,
         IO_AND_CLOCK | ADAPTER_LIBRARIES
         | {"wagerwire.core.hub", "wagerwire.transports", "wagerwire.node", "wagerwire.client",
            "wagerwire.connectors.runner"}),
    Rule("api/ and dashboard/ do not import the composition root", ("api/", "dashboard/"),
         frozenset({"wagerwire.node"})),
    Rule("core/ and auth/ do not import redis", ("core/", "auth/"), frozenset({"redis"})),
    Rule("tls/ is a leaf adapter: certificates only, no web or server framework", ("tls/",),
         ADAPTER_LIBRARIES, allowed_wagerwire=("wagerwire.tls",)),
    Rule("tls/certs.py works on values: no files, sockets or clock", ("tls/certs.py",),
         IO_AND_CLOCK - {"datetime"} | {"os", "pathlib", "tempfile"}),
)


def imported_names(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``path``; ``from m import n`` gives m and m.n."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _matches(name: str, prefixes: frozenset[str] | tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        package = ".".join(["wagerwire", *path.relative_to(root).parent.parts])
        names = list(imported_names(path, package))
        for rule in RULES:
            if not rule.applies_to(rel):
                continue
            for line, name in names:
                bad = _matches(name, rule.forbids)
                if rule.allowed_wagerwire is not None and _matches(name, ("wagerwire",)):
                    bad = bad or not _matches(name, rule.allowed_wagerwire)
                if bad:
                    found.append(f"{rel}:{line}: imports {name} ({rule.name})")
    return found


def test_the_package_keeps_its_layers() -> None:
    assert violations() == []


def test_every_rule_names_modules_that_exist() -> None:
    for rule in RULES:
        for where in (*rule.where, *rule.except_in):
            assert (SRC / where).exists(), where


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "wagerwire"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(copy) == []
    additions = {
        "core/channels.py": "import redis\nfrom wagerwire.node import server\n",
        "dialects/stake.py": "import asyncio\nfrom wagerwire.types import now_ms\n",
        "wire/websocket.py": "from time import monotonic\n",
        "api/system.py": "from wagerwire.node.server import Server\n",
        "auth/gate.py": "from redis.asyncio import Redis\n",
        "client/protocol.py": "import socket\n",
        "core/tokens.py": "from . import hub\n",
        "connectors/gaps.py": "import websockets\n",
        "tls/certs.py": "import pathlib\nfrom wagerwire.api import system\n",
    }
    for rel, text in additions.items():
        target = copy / rel
        target.write_text(target.read_text() + "\n" + text)
    reported = "\n".join(violations(copy))
    for expected in (
        "core/channels.py", "imports redis", "imports wagerwire.node",
        "dialects/stake.py", "imports asyncio", "imports wagerwire.types.now_ms",
        "wire/websocket.py", "imports time",
        "api/system.py", "auth/gate.py", "imports redis.asyncio",
        "client/protocol.py", "imports socket",
        "core/tokens.py", "imports wagerwire.core.hub",
        "connectors/gaps.py", "imports websockets",
        "tls/certs.py:", "imports pathlib", "imports wagerwire.api",
    ):
        assert expected in reported, (expected, reported)
