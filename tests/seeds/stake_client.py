# ruff: noqa
# Seed 000 (Stake.com "WebSocket Guide", /work/shared/seeds/000_cd642cc8c09edc1f.txt), section
# "Robust WebSocket Client" (StakeWebSocket, MyHandler and its usage), verbatim except:
# - the host: wss://stake.com becomes ws://127.0.0.1:8000 (the tests substitute the live port);
# - the token: "your_token" is replaced by the tests with a test key;
# - indentation, which the seed's text lost in extraction, restored as Python requires.
# It passes `extra_headers=`, which websockets >= 14 renamed to `additional_headers`, so the
# tests run it unchanged with websockets 13.1 (installed by the tests on first use).
# The Origin header stays https://stake.com, as the seed sends it.
import asyncio
import websockets
import json
import logging

logger = logging.getLogger("stake_ws")

class StakeWebSocket:
    def __init__(self, access_token: str):
        self.access_token = access_token
        self.uri = "ws://127.0.0.1:8000/_api/websocket"
        self.ws = None
        self.subscriptions = []
        self.reconnect_delay = 1
        self.max_reconnect_delay = 60

    async def connect(self):
        while True:
            try:
                headers = {
                    "x-access-token": self.access_token,
                    "Origin": "https://stake.com",
                }
                async with websockets.connect(
                    self.uri,
                    extra_headers=headers,
                    ping_interval=30,
                    ping_timeout=10
                ) as ws:
                    self.ws = ws
                    self.reconnect_delay = 1  # Reset on successful connect
                    logger.info("Connected to Stake.com WebSocket")
                    # Re-subscribe to channels
                    for channel in self.subscriptions:
                        await self._subscribe(channel)
                    await self._listen()
            except websockets.exceptions.ConnectionClosed:
                logger.warning("WebSocket connection closed")
            except Exception as e:
                logger.error(f"WebSocket error: {e}")
            # Exponential backoff
            logger.info(f"Reconnecting in {self.reconnect_delay}s...")
            await asyncio.sleep(self.reconnect_delay)
            self.reconnect_delay = min(
                self.reconnect_delay * 2,
                self.max_reconnect_delay
            )

    async def _subscribe(self, channel: str):
        if self.ws:
            await self.ws.send(json.dumps({
                "type": "subscribe",
                "channel": channel
            }))
            logger.info(f"Subscribed to {channel}")

    async def subscribe(self, channel: str):
        if channel not in self.subscriptions:
            self.subscriptions.append(channel)
            await self._subscribe(channel)

    async def _listen(self):
        async for message in self.ws:
            data = json.loads(message)
            await self.on_message(data)

    async def on_message(self, data: dict):
        """Override this method to handle messages."""
        print(f"Message: {data}")

# Usage:
class MyHandler(StakeWebSocket):
    async def on_message(self, data):
        channel = data.get("channel", "")
        if "balances" in channel:
            print(f"💰 Balance changed: {data['payload']}")
        elif "game:" in channel:
            print(f"🎰 Game update: {data['payload']}")
        else:
            print(f"📩 {data}")

async def main():
    handler = MyHandler(access_token="your_token")
    await handler.subscribe("user:balances")
    await handler.connect()

asyncio.run(main())
