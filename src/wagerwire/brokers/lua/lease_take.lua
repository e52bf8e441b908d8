-- Take or keep a named lease: one holder at a time, expiring unless renewed.
-- KEYS[1]: the lease.   ARGV: holder id, ttl ms.   Returns 1 when the caller holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
