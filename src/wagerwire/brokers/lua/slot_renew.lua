-- Keep a node's open stream slots counted for another ttl: every slot of every subject at once.
-- KEYS: one sorted set per subject.
-- ARGV[1]: ttl ms; ARGV[2..#KEYS+1]: how many slot ids follow for each key, in KEYS order;
-- then the slot ids. A slot that had expired (this node could not renew it in time) is
-- counted again: its stream is still open. Returns the number of slots renewed.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
local at = #KEYS + 2
local renewed = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  for _ = 1, tonumber(ARGV[i + 1]) do
    redis.call('ZADD', key, now + ttl, ARGV[at])
    at = at + 1
    renewed = renewed + 1
  end
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return renewed
