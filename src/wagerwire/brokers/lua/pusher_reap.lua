-- Clean up after a node whose lease expired (one caller wins: ZREM answers 1 once).
-- KEYS[1]: nodes   KEYS[2]: connections (hash "node|app")   KEYS[3]: what the dead node
-- touched.   ARGV: dead node, key prefix ("<prefix>:pusher").
-- Returns {app, name, hub, 1 if vacated else 0, n, user1..usern (their last connection
-- went with the node), …} per channel the node touched. Keys of channels are built here
-- from the touched set (standalone Redis, as every wagerwire deployment uses).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead, p = ARGV[1], ARGV[2]
if redis.call('ZREM', KEYS[1], dead) == 0 then return {} end
local conns = redis.call('HGETALL', KEYS[2])
for i = 1, #conns, 2 do
  if string.sub(conns[i], 1, #dead + 1) == dead .. '|' then redis.call('HDEL', KEYS[2], conns[i]) end
end
local touched = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
local alive = {}
local function live(n)
  if alive[n] == nil then
    local e = redis.call('ZSCORE', KEYS[1], n)
    alive[n] = (e and tonumber(e) >= now) and true or false
  end
  return alive[n]
end
local out = {}
for _, entry in ipairs(touched) do
  local a = string.find(entry, '\t', 1, true)
  local b = string.find(entry, '\t', a + 1, true)
  local app, name, hub = string.sub(entry, 1, a - 1), string.sub(entry, a + 1, b - 1), string.sub(entry, b + 1)
  local occ, mem = p .. ':occ:' .. hub, p .. ':mem:' .. hub
  local gone = tonumber(redis.call('HGET', occ, dead) or '0')
  redis.call('HDEL', occ, dead)
  local others = 0
  local all = redis.call('HGETALL', occ)
  for i = 1, #all, 2 do
    if live(all[i]) then others = others + tonumber(all[i + 1]) end
  end
  if #all == 0 then redis.call('SREM', p .. ':chans:' .. app, name) end
  local vacated = (gone > 0 and others == 0) and 1 or 0
  local mine = {}
  local members = redis.call('HGETALL', mem)
  for i = 1, #members, 2 do
    local f = members[i]
    local s = string.find(f, '|', 1, true)
    if string.sub(f, 1, s - 1) == dead then
      mine[#mine + 1] = string.sub(f, s + 1)
      redis.call('HDEL', mem, f)
    end
  end
  local removed = {}
  for _, uid in ipairs(mine) do
    local still = false
    for i = 1, #members, 2 do
      local f = members[i]
      local s = string.find(f, '|', 1, true)
      local n = string.sub(f, 1, s - 1)
      if n ~= dead and string.sub(f, s + 1) == uid and live(n) then still = true end
    end
    if not still then removed[#removed + 1] = uid end
  end
  out[#out + 1] = app
  out[#out + 1] = name
  out[#out + 1] = hub
  out[#out + 1] = vacated
  out[#out + 1] = #removed
  for _, uid in ipairs(removed) do out[#out + 1] = uid end
end
return out
