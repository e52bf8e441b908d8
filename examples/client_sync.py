"""Tail one channel without asyncio, and print where to resume from on Ctrl-C.

    python examples/client_sync.py http://127.0.0.1:8000 game:crash [resume-token]

Set WAGERWIRE_KEY to stream with an API key (the SDK exchanges it for stream tokens).
"""

from __future__ import annotations

import os
import sys

from wagerwire.client import stream


def main(url: str, channel: str, since: str | None) -> None:
    with stream(url, [channel], since=since, key=os.environ.get("WAGERWIRE_KEY")) as messages:
        try:
            for msg in messages:
                print(msg.offset, msg.data, flush=True)
        except KeyboardInterrupt:
            pass
        print("resume with:", messages.resume_token, flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] + [None] * 3
    main(args[0] or "http://127.0.0.1:8000", args[1] or "game:crash", args[2])
