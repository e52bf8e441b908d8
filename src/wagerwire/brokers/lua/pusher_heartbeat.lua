-- A node renews its lease and publishes its connections per app.
-- KEYS[1]: nodes   KEYS[2]: connections (hash, "node|app" -> count)
-- ARGV: node, lease ms, then app, count pairs.
-- Returns {1 if the node was not in the set (it had been reaped), {expired nodes},
--          {app, connections on other live nodes, …}}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node = ARGV[1]
local new = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), node)
for i = 3, #ARGV, 2 do
  local f = node .. '|' .. ARGV[i]
  if tonumber(ARGV[i + 1]) > 0 then redis.call('HSET', KEYS[2], f, ARGV[i + 1])
  else redis.call('HDEL', KEYS[2], f) end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)
local alive, sums, apps = {}, {}, {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local f = all[i]
  local s = string.find(f, '|', 1, true)
  local n, app = string.sub(f, 1, s - 1), string.sub(f, s + 1)
  if n ~= node then
    if alive[n] == nil then
      local e = redis.call('ZSCORE', KEYS[1], n)
      alive[n] = (e and tonumber(e) >= now) and true or false
    end
    if alive[n] then
      if sums[app] == nil then apps[#apps + 1] = app; sums[app] = 0 end
      sums[app] = sums[app] + tonumber(all[i + 1])
    end
  end
end
local flat = {}
for _, app in ipairs(apps) do
  flat[#flat + 1] = app
  flat[#flat + 1] = sums[app]
end
return {new, expired, flat}
