# ruff: noqa
# Seed 000 (Stake.com "WebSocket Guide", /work/shared/seeds/000_cd642cc8c09edc1f.txt), section
# "Basic WebSocket Connection", verbatim except the host (wss://stake.com becomes
# ws://127.0.0.1:8000; the tests substitute the live port), the token ("your_token_here" is
# replaced by the tests) and the indentation the seed's text lost in extraction.
# Runs with websockets 13.1 (`extra_headers=`; renamed `additional_headers` in websockets 14).
import asyncio
import websockets
import json
async def connect_to_stake():
    uri = "ws://127.0.0.1:8000/_api/websocket"
    headers = {
        "x-access-token": "your_token_here",
        "Origin": "https://stake.com",
    }
    async with websockets.connect(uri, extra_headers=headers) as ws:
        print("✅ Connected to Stake.com WebSocket")
        # Subscribe to balance updates
        subscribe_msg = {
            "type": "subscribe",
            "channel": "user:balances"
        }
        await ws.send(json.dumps(subscribe_msg))
        # Listen for messages
        async for message in ws:
            data = json.loads(message)
            print(f"📩 Received: {data}")
asyncio.run(connect_to_stake())
