// SportsGameOdds seed 002, JavaScript quick start, verbatim but for API_BASE_URL (host; http instead of https).
const axios = require("axios");
const Pusher = require("pusher-js");

const STREAM_FEED = "events:live"; // ex: events:upcoming, events:byid, events:live
const API_BASE_URL = "http://127.0.0.1:8000/v2";
const API_KEY = "YOUR API KEY";

const run = async () => {
  // Initialize a data structure where we'll save the event data
  const EVENTS = new Map();

  // Call this endpoint to get initial data and connection parameters
  const streamInfo = await axios.get(`${API_BASE_URL}/stream/events`, { headers: { "x-api-key": API_KEY }, params: { feed: STREAM_FEED } }).then((r) => r?.data);

  // Seed initial data
  streamInfo.data.forEach((event) => EVENTS.set(event?.eventID, event));

  // Connect to WebSocket server
  const pusher = new Pusher(streamInfo.pusherKey, streamInfo.pusherOptions);
  pusher.subscribe(streamInfo.channel).bind("data", async (changedEvents) => {
    // Get the eventIDs that changed
    const eventIDs = changedEvents.map(({ eventID }) => eventID).join(",");

    // Get the full event data for the changed events
    const eventDataResponse = await axios.get(`${API_BASE_URL}/events`, { headers: { "x-api-key": API_KEY }, params: { eventIDs } }).then((r) => r?.data);

    // Update our data with the full event data
    eventDataResponse.data.forEach((newEventData) => EVENTS.set(newEventData?.eventID, newEventData));
  });

  // Use pusher.disconnect to disconnect from the WebSocket server
  process.on("SIGINT", pusher.disconnect);
};
run();
