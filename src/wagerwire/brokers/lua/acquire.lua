-- Take the channel's writer lease (or renew our own) and read its position.
-- KEYS: meta (hash epoch/top/dirty), lease, wanted, stream
-- ARGV: token, lease ttl ms, new epoch ('' = do not create a missing channel), wanted ttl ms
-- Returns {0, pttl} busy (and marks the lease wanted), {2} the channel is unknown to Redis,
-- {1, epoch, top, dirty} acquired; dirty = 1 when the last holder did not release cleanly.
local cur = redis.call('GET', KEYS[2])
if cur and cur ~= ARGV[1] then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[4])
  return {0, redis.call('PTTL', KEYS[2])}
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  if ARGV[3] == '' then
    return {2}
  end
  epoch = ARGV[3]
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0, 'dirty', 0)
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local dirty = tonumber(redis.call('HGET', KEYS[1], 'dirty') or '0')
if cur then
  dirty = 1  -- re-taking our own lease: we lost track of it, so check the store
end
redis.call('HSET', KEYS[1], 'dirty', 1)
return {1, epoch, top, dirty}
