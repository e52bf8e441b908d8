"""Sans-I/O wire codecs: WebSocket (RFC 6455) and server-sent events, bytes in and bytes out.

Nothing here touches a socket, an event loop or a clock, so the transports in
``wagerwire.transports`` drive these codecs and the tests feed them raw bytes. Server-to-client
encoders are plain functions because each frame is built once per message and then written
unchanged to every subscriber.
"""

from __future__ import annotations

__all__: list[str] = []
