-- Extend our leases. KEYS: leases     ARGV: token, ttl ms
-- Returns one flag per lease: 1 still ours, 0 lost.
local out = {}
for i, lease in ipairs(KEYS) do
  if redis.call('GET', lease) == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
