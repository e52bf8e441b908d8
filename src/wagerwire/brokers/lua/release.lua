-- Give the lease back. A clean release (everything we assigned was committed) clears the
-- dirty flag; otherwise it stays set and the next holder reconciles with the store first.
-- KEYS: meta, lease     ARGV: token, clean (1 or 0)
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  if ARGV[2] == '1' then
    redis.call('HSET', KEYS[1], 'dirty', 0)
  end
  return 1
end
return 0
