-- A connection of a user leaves a presence channel on a node.
-- KEYS[1]: members   KEYS[2]: nodes.   ARGV: node, user id.
-- Returns 1 when it was the user's last connection on a live node, else 0.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, uid = ARGV[1], ARGV[2]
local mine = node .. '|' .. uid
local v = redis.call('HGET', KEYS[1], mine)
if not v then return 0 end
local vs = string.find(v, '|', 1, true)
local c = tonumber(string.sub(v, 1, vs - 1)) - 1
if c > 0 then
  redis.call('HSET', KEYS[1], mine, c .. string.sub(v, vs))
  return 0
end
redis.call('HDEL', KEYS[1], mine)
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  local s = string.find(f, '|', 1, true)
  if string.sub(f, s + 1) == uid then
    local e = redis.call('ZSCORE', KEYS[2], string.sub(f, 1, s - 1))
    if e and tonumber(e) >= now then return 0 end
  end
end
return 1
