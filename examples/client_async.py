"""Follow crash rounds and football odds with the async SDK; survives server restarts.

    python examples/client_async.py http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
import sys

from wagerwire.client import Client


async def main(url: str) -> None:
    async with Client(url) as client:
        async for msg in client.subscribe(["game:crash", "odds:football:*"]):
            print(f"{msg.channel:<24} #{msg.offset:<6} {msg.source:<8} {msg.data}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
