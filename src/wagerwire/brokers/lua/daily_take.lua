-- One use of a per-UTC-day quota (the day on Redis' clock, so every node agrees).
-- KEYS[1]: the quota (hash: day, used).   ARGV[1]: uses allowed per day.
-- Returns 0 when allowed, else milliseconds until the next UTC day.
local t = redis.call('TIME')
local day = math.floor(t[1] / 86400)
local state = redis.call('HMGET', KEYS[1], 'day', 'used')
local used = 0
if tonumber(state[1]) == day then
  used = tonumber(state[2]) or 0
end
if used >= tonumber(ARGV[1]) then
  return (day + 1) * 86400000 - (t[1] * 1000 + math.floor(t[2] / 1000))
end
redis.call('HSET', KEYS[1], 'day', day, 'used', used + 1)
redis.call('EXPIRE', KEYS[1], 172800)
return 0
