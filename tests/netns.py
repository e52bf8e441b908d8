"""Machines for multi-node tests: network namespaces on a bridge, each a host of its own.

``Network.create(["a", "b", "c"])`` makes, with names unique to this run:

* a bridge ``wwb<tag>`` in the root namespace holding ``10.77.<n>.1/24`` (``n`` a /24 no
  interface here uses yet); that address is the "database host": Redis and PostgreSQL bind
  to it (and to 127.0.0.1);
* per host a namespace ``ww<tag>-<name>`` with its loopback up and one end of a veth pair
  (``wp<tag><i>``, address ``10.77.<n>.<10+i>``), the other end (``wv<tag><i>``) on the
  bridge. A node started with ``host.wrap`` (``ip netns exec …``) and ``--host
  host.address`` is reachable only at its own address, like a machine on a LAN.

``close()`` deletes the namespaces (which deletes their veth pairs) and the bridge; run it in
fixture teardown after the processes inside are stopped. Where namespaces cannot be made (not
root, no ``ip``, or ``WAGERWIRE_TEST_NO_NETNS=1``), ``create`` warns with
:class:`NetnsUnavailable` and logs why, and every host is 127.0.0.1 on ports of its own: the
test still runs, and says it ran on loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field

import pytest

__all__ = ["Host", "Network", "NetnsUnavailable"]

log = logging.getLogger("tests.netns")


class NetnsUnavailable(pytest.PytestWarning):
    """Network namespaces could not be made: the test ran on loopback ports instead."""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Host:
    """One machine: its name, address and the command prefix that runs inside it."""

    name: str
    address: str
    namespace: str | None = None

    @property
    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace] if self.namespace else []


@dataclass(slots=True)
class Network:
    hosts: dict[str, Host]
    db_address: str  # where Redis and PostgreSQL listen (the bridge, or 127.0.0.1)
    isolated: bool  # True: real namespaces; False: the loopback fallback
    tag: str = ""
    _namespaces: list[str] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)
    _bridge: str | None = None

    @classmethod
    def create(cls, names: list[str]) -> Network:
        reason = cls._unavailable()
        if reason is None:
            tag = secrets.token_hex(3)
            net = cls({}, "", True, tag)
            try:
                net._build(names)
                return net
            except OSError as exc:
                net.close()
                reason = str(exc)
        message = (f"network namespaces unavailable ({reason}): the hosts {names} run on "
                   "127.0.0.1 ports instead of machines of their own")
        log.warning(message)
        warnings.warn(message, NetnsUnavailable, stacklevel=2)
        return cls({n: Host(n, "127.0.0.1") for n in names}, "127.0.0.1", False)

    @staticmethod
    def _unavailable() -> str | None:
        if os.environ.get("WAGERWIRE_TEST_NO_NETNS"):
            return "WAGERWIRE_TEST_NO_NETNS is set"
        if shutil.which("ip") is None:
            return "no ip command"
        if os.geteuid() != 0:
            return "not root"
        return None

    @staticmethod
    def _free_subnet() -> int:
        used = _ip("-4", "-o", "addr", "show")
        for _ in range(50):
            n = secrets.randbelow(250) + 2
            if f" 10.77.{n}." not in used:
                return n
        raise OSError("no free 10.77.x.0/24")

    def _build(self, names: list[str]) -> None:
        n = self._free_subnet()
        bridge = f"wwb{self.tag}"
        _ip("link", "add", bridge, "type", "bridge")
        self._bridge = bridge
        self.db_address = f"10.77.{n}.1"
        _ip("addr", "add", f"{self.db_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, name in enumerate(names, start=1):
            ns = f"ww{self.tag}-{name}"
            _ip("netns", "add", ns)
            self._namespaces.append(ns)
            outside, inside = f"wv{self.tag}{i}", f"wp{self.tag}{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._links.append(outside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            address = str(ipaddress.IPv4Address(f"10.77.{n}.{10 + i}"))
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            self.hosts[name] = Host(name, address, ns)

    def close(self) -> None:
        """Delete what :meth:`create` made (idempotent, best effort, each step logged): the
        veth pairs first (a namespace's own end goes with it only once the kernel gets to
        it), then the namespaces and the bridge."""
        for link in self._links:
            try:
                _ip("link", "del", link)
            except OSError as exc:
                log.warning("cannot delete link %s: %s", link, exc)
        self._links.clear()
        for ns in self._namespaces:
            try:
                _ip("netns", "del", ns)
            except OSError as exc:
                log.warning("cannot delete namespace %s: %s", ns, exc)
        self._namespaces.clear()
        if self._bridge is not None:
            try:
                _ip("link", "del", self._bridge)
            except OSError as exc:
                log.warning("cannot delete bridge %s: %s", self._bridge, exc)
            self._bridge = None

    def leftovers(self) -> list[str]:
        """Namespaces and links of this run still present (empty after :meth:`close`)."""
        if not self.tag:
            return []
        found = [ns for ns in _ip("netns", "list").split() if self.tag in ns]
        found += [line for line in _ip("-o", "link", "show").splitlines() if self.tag in line]
        return found
