-- Claim an idempotency key for one publish, across nodes.
-- Values: 'p<ts>|<node>|<token>' while in flight, 'd<ts>|<record>' once committed.
-- KEYS: key     ARGV: node, token, ts, window ms, pending ttl ms
-- Returns {1} claimed, {0, value} an earlier publish within the window holds it.
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 2, true)
  local ts = tonumber(string.sub(v, 2, sep - 1))
  if tonumber(ARGV[3]) - ts <= tonumber(ARGV[4]) then
    local mine = string.sub(v, 1, 1) == 'p'
      and string.sub(v, sep + 1, sep + #ARGV[1]) == ARGV[1]
      and string.sub(v, sep + #ARGV[1] + 1, sep + #ARGV[1] + 1) == '|'
    if not mine then
      return {0, v}
    end
  end
end
redis.call('SET', KEYS[1], 'p' .. ARGV[3] .. '|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[5])
return {1}
