-- Seed a channel's position from the store: create it when Redis does not know it, or raise
-- its top when the store is ahead (a holder died between its store commit and ours) and
-- nobody holds the lease. A different epoch in Redis is left alone.
-- KEYS: meta, stream, lease     ARGV: epoch, top
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'top', ARGV[2], 'dirty', 0)
  return 1
end
if epoch == ARGV[1] and redis.call('EXISTS', KEYS[3]) == 0
    and tonumber(redis.call('HGET', KEYS[1], 'top')) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'top', ARGV[2])
  return 2
end
return 0
