-- Drop our in-flight claim of an idempotency key (the publish failed).
-- KEYS: key     ARGV: exact pending value
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
