-- Open one stream slot of a subject if it has fewer than its limit.
-- KEYS[1]: the subject's slots (sorted set, member = slot id, score = expiry ms on Redis' clock)
-- ARGV: slot id, limit, ttl ms.   Returns 1 when admitted, 0 at the limit.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
