"""Follow crash rounds and football odds with the async SDK; survives server restarts.

    python examples/client_async.py http://127.0.0.1:8000
    WAGERWIRE_KEY=ww_… python examples/client_async.py http://127.0.0.1:8000

With a key, each connection authenticates with a short-lived stream token fetched with it
(renewed by the SDK); a key the server refuses, or a channel the key's plan does not include,
ends the loop with AuthError / ForbiddenError instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import os
import sys

from wagerwire.client import AuthError, Client, ForbiddenError


async def main(url: str) -> None:
    async with Client(url, key=os.environ.get("WAGERWIRE_KEY")) as client:
        sub = client.subscribe(["game:crash", "odds:football:*"])
        try:
            async for msg in sub:
                print(f"{msg.channel:<24} #{msg.offset:<6} {msg.source:<8} {msg.data}")
        except (AuthError, ForbiddenError) as exc:
            sys.exit(f"refused: {exc}")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
    except KeyboardInterrupt:
        pass
