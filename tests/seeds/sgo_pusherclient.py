# ruff: noqa
# SportsGameOdds seed 002, the Python example with pusherclient 0.3.0, host and key changed.
# As written the snippet subscribes before connecting and never calls connect(): the lines
# marked CHANGED are the smallest change that makes it run (reference: dialects.md 3.3).
import requests
import pusherclient
import json

API_KEY = 'YOUR_API_KEY'
API_BASE_URL = 'http://127.0.0.1:8000/v2'

def handle_update(data):
    try:
        changed_events = json.loads(data)
        event_ids = ','.join([e['eventID'] for e in changed_events])

        # Fetch updated event data
        response = requests.get(
            f"{API_BASE_URL}/events",
            headers={'x-api-key': API_KEY},
            params={'eventIDs': event_ids}
        )

        for event in response.json()['data']:
            print(f"Updated: {event['eventID']}")

    except Exception as e:
        print(f"Error processing update: {e}")

def connect_to_live_events():
    # Get connection details
    response = requests.get(
        f"{API_BASE_URL}/stream/events",
        headers={'x-api-key': API_KEY},
        params={'feed': 'events:live'}
    )

    stream_info = response.json()
    print(f"Connected with {len(stream_info['data'])} initial events")

    # Connect to Pusher (Note: private channels require custom auth in Python)
    pusher_key = stream_info['pusherKey']
    channel_name = stream_info['channel']

    pusher = pusherclient.Pusher(pusher_key, secure=False, port=8000)  # CHANGED: plain ws

    def connected(data):  # CHANGED: subscribe once connected (the snippet never connects)
        print("Connected to stream")
        channel = pusher.subscribe(channel_name)
        channel.bind('data', handle_update)

    pusher.connection.bind('pusher:connection_established', connected)
    pusher.connect()  # CHANGED

if __name__ == "__main__":
    pusherclient.Pusher.host = "127.0.0.1"  # CHANGED: the host is a class attribute
    connect_to_live_events()
    import time  # CHANGED: keep the process alive (the client runs in a thread)
    while True:
        time.sleep(1)
