"""Acknowledged, durable publishes per second through the hub, per store and broker.

    .venv/bin/python bench/publish_throughput.py                  # starts its own servers
    .venv/bin/python bench/publish_throughput.py --seconds 5 --concurrency 1,64
    .venv/bin/python bench/publish_throughput.py --sqlite-only --sqlite-sync NORMAL,FULL

Each run builds a hub exactly as ``wagerwire serve`` does (``node.backends.build_backends``) and
keeps C publishers busy for S seconds; a publish counts once ``Hub.publish`` returned, i.e.
the message is committed in the store (SQLite: WAL, synchronous=FULL, the server's default:
fsynced, durable against power loss; ``--sqlite-sync NORMAL,FULL`` measures both in one run;
PostgreSQL: fsync=on, synchronous_commit=on) and, with Redis, committed there
and fanned out. Publishes go to 16 channels round-robin. Redis and PostgreSQL are started on
loopback in temporary directories (``tests/servers.py``) and stopped at the end.

CPU per publish (the machine is shared, so wall-clock rates are noisy; CPU time is less so):
``cpu_us`` is this process's CPU time (every thread: the hub, the SQLite writer, the drivers)
divided by the publishes; ``db_cpu_us`` is the same for the Redis and PostgreSQL server
processes (and their children: PostgreSQL's backends), read from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresServer, RedisServer  # noqa: E402
from wagerwire.brokers.redis_history import HistoryStore  # noqa: E402
from wagerwire.config import Settings  # noqa: E402
from wagerwire.core.hub import Hub, HubLimits  # noqa: E402
from wagerwire.node.backends import build_backends  # noqa: E402
from wagerwire.node.server import freeze_startup_objects, install_uvloop  # noqa: E402
from wagerwire.stores.sqlite import SqliteStore  # noqa: E402

SERVER_PIDS: list[int] = []  # Redis and PostgreSQL (their children are counted too)
_TICK = os.sysconf("SC_CLK_TCK")


def servers_cpu() -> float:
    """CPU seconds used so far by the live server processes and their descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    total = 0.0
    for pid in cpu:
        p = pid
        while p > 1:
            if p in SERVER_PIDS:
                total += cpu[pid]
                break
            p = parents.get(p, 0)
    return total


async def run_one(
    store: str, broker: str, concurrency: int, seconds: float, sqlite_sync: str | None = None,
    rate: float = 0.0,
) -> dict[str, object]:
    settings = Settings(store=store, broker=broker, demo=False)
    st, br = build_backends(settings)
    if sqlite_sync is not None and isinstance(st, SqliteStore):
        st = SqliteStore(st.path, st.retention, synchronous=sqlite_sync)  # type: ignore[arg-type]
    hub = Hub(st, br, HubLimits())
    await hub.start()
    # Steady state, as a serving node is: every channel exists and (Redis) has its writer
    # lease, and what start-up built is out of the collector's way (`wagerwire serve` freezes
    # it the same way). Not measured.
    for c in range(16):
        await hub.publish(f"bench:c{c}", {"warm-up": True})
    freeze_startup_objects()
    done = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    cpu0, db0 = time.process_time(), servers_cpu()

    async def publisher(n: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await hub.publish(f"bench:c{(n + i) % 16}", {"n": n, "i": i, "odds": [2.1, 3.4]})
            latencies.append(time.perf_counter() - t0)
            done += 1
            i += 1

    async def one(i: int) -> None:
        nonlocal done
        t0 = time.perf_counter()
        await hub.publish(f"bench:c{i % 16}", {"n": 0, "i": i, "odds": [2.1, 3.4]})
        latencies.append(time.perf_counter() - t0)
        done += 1

    async def paced() -> None:
        # A fixed rate: publish i starts at its scheduled time whatever the earlier ones do.
        pending: set[asyncio.Task[None]] = set()
        start, i = time.perf_counter(), 0
        while (now := time.perf_counter()) < stop:
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.ensure_future(one(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        if pending:
            await asyncio.gather(*pending)

    started = time.perf_counter()
    if rate > 0:
        await paced()
    else:
        await asyncio.gather(*(publisher(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu, db = time.process_time() - cpu0, servers_cpu() - db0
    # With Redis the hub's store is a HistoryStore; the group-commit counter is its inner's.
    durable = hub.store.inner if isinstance(hub.store, HistoryStore) else hub.store
    commits = getattr(durable, "commits", None)
    await hub.close()
    latencies.sort()
    return {
        "store": store.split(":", 1)[0] + (f" ({sqlite_sync})" if sqlite_sync else ""),
        "broker": broker.split(":", 1)[0],
        "concurrency": f"{rate:g}/s" if rate > 0 else concurrency,
        "publishes_per_s": round(done / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "per_commit": round(done / commits, 1) if commits else None,
        "cpu_us": round(cpu / done * 1e6, 1) if done else None,
        "db_cpu_us": round(db / done * 1e6, 1) if done and SERVER_PIDS else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--sqlite-sync", default="",
                        help="comma list of SQLite synchronous modes to compare (NORMAL,FULL)")
    parser.add_argument("--sqlite-only", action="store_true",
                        help="skip PostgreSQL and Redis")
    parser.add_argument("--only", default="sqlite,postgresql,postgresql+redis",
                        help="comma list of the combinations to run")
    parser.add_argument("--rate", default="",
                        help="comma list of fixed publish rates (per second) to measure the "
                             "time to acknowledgement at, after the concurrency runs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ww-bench-"))
    if args.only.strip() == "sqlite":
        args.sqlite_only = True
    redis = None if args.sqlite_only else RedisServer(tmp / "redis").start()
    pg = None if args.sqlite_only else PostgresServer(
        Path(tempfile.mkdtemp(prefix="ww-bench-pg-")), fsync=True).start()
    SERVER_PIDS[:] = [s.proc.pid for s in (redis, pg) if s is not None and s.proc is not None]
    syncs: list[str | None] = [m.strip().upper() for m in args.sqlite_sync.split(",")
                               if m.strip()] or [None]
    try:
        results = []
        only = {o.strip() for o in args.only.split(",")}
        loads = [(int(c), 0.0) for c in args.concurrency.split(",") if c.strip()]
        loads += [(0, float(r)) for r in args.rate.split(",") if r.strip()]
        if any(c <= 0 and r <= 0 for c, r in loads):
            raise SystemExit("--concurrency and --rate values must be > 0 (omit --rate to "
                             "skip the fixed-rate runs)")
        for concurrency, rate in loads:
            combos: list[tuple[str, str, str | None]] = []
            if "sqlite" in only:
                combos += [(f"sqlite:///{tmp}/{uuid.uuid4().hex}.db", "memory://", sync)
                           for sync in syncs]
            if pg is not None and redis is not None:
                if "postgresql" in only:
                    combos.append((f"{pg.url()}?schema=b{uuid.uuid4().hex[:8]}", "memory://",
                                   None))
                if "postgresql+redis" in only:
                    combos.append((f"{pg.url()}?schema=b{uuid.uuid4().hex[:8]}",
                                   f"{redis.url}?prefix=b{uuid.uuid4().hex[:8]}", None))
            for store, broker, sync in combos:
                result = await run_one(store, broker, concurrency, args.seconds, sync, rate)
                print(json.dumps(result), flush=True)
                results.append(result)
        print("\n| store | broker | concurrent publishers | publishes/s | p50 ms | p99 ms "
              "| publishes per commit | CPU µs/publish | server CPU µs/publish |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['store']} | {r['broker']} | {r['concurrency']} | "
                  f"{r['publishes_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['per_commit']} | "
              f"{r['cpu_us']} | {r['db_cpu_us']} |")
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.directory, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # The event loop `wagerwire serve` runs on (uvloop where installed), not asyncio's default.
    print(f"event loop: {'uvloop' if install_uvloop() else 'asyncio'}", flush=True)
    asyncio.run(main())
