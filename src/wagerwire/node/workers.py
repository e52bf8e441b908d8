"""``wagerwire serve --workers N``: N worker processes on one port, each its own event loop.

The supervisor (the process you started) binds the port once to reserve it (and to resolve
``--port 0``), then forks N workers. Each worker is a complete node (``server.run``) whose
listening socket has ``SO_REUSEPORT`` set, so the kernel spreads incoming connections over
the workers. Workers share nothing in memory: offsets, fan-out and history go through the
Redis broker and the PostgreSQL store, which is why ``--workers`` above 1 without them is
refused (``backends.check_workers`` explains). Only worker 0 runs the demo simulators (one
simulated casino, not N) and the upstream connectors (``[[sources]]`` and those added
at run time, stored in PostgreSQL; the other workers' ``sources add|remove`` only write the
store and worker 0 picks the change up within seconds).

The supervisor restarts a worker that dies (with a pause if it dies within seconds of its
start) and, on SIGTERM or SIGINT, passes SIGTERM on to every worker (each shuts down
gracefully: clients are told to resume) and waits for them.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from wagerwire.config import Settings
from wagerwire.node.backends import FeaturesFactory, check_workers, with_readiness
from wagerwire.tls import DevCertificateSource

__all__ = ["Supervisor", "serve"]

log = logging.getLogger("wagerwire.node.workers")

RESTART_PAUSE_S = 1.0
STOP_TIMEOUT_S = 30.0


def serve(settings: Settings, features: FeaturesFactory | None) -> int:
    """Serve with ``settings.workers`` processes; returns the exit code.

    Raises:
        BadParameter: ``--workers`` above 1 without a Redis broker and a PostgreSQL store.
    """
    check_workers(settings)
    if settings.workers == 1:
        from wagerwire.node.server import install_uvloop, run

        install_uvloop()
        return asyncio.run(run(settings, with_readiness(features)))
    return Supervisor(settings, features).run()


def _worker(settings: Settings, features: FeaturesFactory | None, index: int) -> None:
    """One worker process: a whole node on the shared port."""
    from wagerwire.node import server

    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # server.run installs its own on the loop
    if index > 0:  # one simulated casino and one connector per source, not N
        settings = dataclasses.replace(settings, demo=False, run_connectors=False)
    server.install_uvloop()
    code = asyncio.run(server.run(settings, with_readiness(features)))
    sys.stdout.flush()
    os._exit(code)


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the supervisor dies, even by SIGKILL (no orphan workers)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, settings: Settings, features: FeaturesFactory | None) -> None:
        self.settings = settings
        self.features = features
        self.procs: dict[int, BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self._stopping = False
        self._ctx = multiprocessing.get_context("fork")

    def _reserve_port(self) -> socket.socket:
        s = self.settings
        sock = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((s.host, s.port))
        return sock

    def _start(self, index: int) -> None:
        proc = self._ctx.Process(
            target=_worker, args=(self.settings, self.features, index),
            name=f"wagerwire-worker-{index}",
        )
        proc.start()
        self.procs[index] = proc
        self._started_at[index] = time.monotonic()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every worker looks at its TLS certificate files now."""
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGHUP)

    def run(self) -> int:
        reserved = self._reserve_port()
        self.settings = dataclasses.replace(self.settings, port=reserved.getsockname()[1])
        shared_dir = None
        if self.settings.tls_dev and not self.settings.tls_cert:
            # One generated certificate for all workers: made here, in a directory they share
            # (they poll it, so a rotation one of them makes reaches the others).
            if not self.settings.tls_dev_dir:
                shared_dir = tempfile.mkdtemp(prefix="wagerwire-tls-dev-")
                self.settings = dataclasses.replace(self.settings, tls_dev_dir=shared_dir)
            DevCertificateSource(self.settings.tls_dev_dir)
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        if self.settings.tls_cert or self.settings.tls_dev:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            for index in range(self.settings.workers):
                self._start(index)
            print(f"wagerwire: {self.settings.workers} workers on port {self.settings.port} "
                  f"(pids {', '.join(str(p.pid) for p in self.procs.values())})", flush=True)
            self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reserved.close()
            if shared_dir is not None:
                shutil.rmtree(shared_dir, ignore_errors=True)
        return 0

    def _watch(self) -> None:
        while not self._stopping:
            sentinels = [p.sentinel for p in self.procs.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for index, proc in list(self.procs.items()):
                if proc.is_alive() or self._stopping:
                    continue
                log.error("worker %d (pid %s) exited with %s; restarting", index, proc.pid,
                          proc.exitcode)
                proc.join()
                if time.monotonic() - self._started_at[index] < 5:
                    time.sleep(RESTART_PAUSE_S)
                self._start(index)

    def _stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
