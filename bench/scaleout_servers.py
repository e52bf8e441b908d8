"""Run a Redis and a PostgreSQL (fsync on) on loopback until SIGTERM; print their URLs.

Used by ``bench/workers.sh``; the servers live in temporary directories and are stopped
(by PID) when this process gets SIGTERM or SIGINT.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import PostgresServer, RedisServer  # noqa: E402


def main() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    redis_dir = Path(tempfile.mkdtemp(prefix="ww-bench-redis-"))
    redis = RedisServer(redis_dir).start()
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="ww-bench-pg-")), fsync=True).start()
    try:
        print(redis.url, pg.url(), flush=True)
        stop.wait()
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        shutil.rmtree(pg.directory, ignore_errors=True)


if __name__ == "__main__":
    main()
