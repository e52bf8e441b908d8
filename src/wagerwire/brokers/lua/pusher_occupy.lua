-- One node's subscriptions of a Pusher channel change by delta; answers the channel's
-- subscriptions on live nodes before and after (occupied: 0 -> n, vacated: n -> 0).
-- KEYS[1]: the channel's counts (hash, node -> subscriptions)   KEYS[2]: nodes (sorted set,
-- score = lease expiry ms)   KEYS[3]: the app's channels (set of names)   KEYS[4]: what the
-- node touched (set of "app\tname\thub", for reaping it when it dies)
-- ARGV: node, delta, name, touched member.   Returns {before, after}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, delta = ARGV[1], tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local own, others = 0, 0
for i = 1, #all, 2 do
  if all[i] == node then
    own = tonumber(all[i + 1])
  else
    local e = redis.call('ZSCORE', KEYS[2], all[i])
    if e and tonumber(e) >= now then others = others + tonumber(all[i + 1]) end
  end
end
local after = own + delta
if after > 0 then
  redis.call('HSET', KEYS[1], node, after)
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[4])
else
  after = 0
  redis.call('HDEL', KEYS[1], node)
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
end
return {others + own, others + after}
