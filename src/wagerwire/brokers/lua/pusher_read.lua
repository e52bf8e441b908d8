-- Read-only: the members of presence channels and the subscriptions of channels, counting
-- live nodes only.   KEYS[1]: nodes; then ARGV[1] = "m" (KEYS[2]: one channel's members →
-- {user, info, …}) or "c" (KEYS[2..]: channels' counts → {count, …}).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local alive = {}
local function live(n)
  if alive[n] == nil then
    local e = redis.call('ZSCORE', KEYS[1], n)
    alive[n] = (e and tonumber(e) >= now) and true or false
  end
  return alive[n]
end
local out = {}
if ARGV[1] == 'm' then
  local all, seen = redis.call('HGETALL', KEYS[2]), {}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    local s = string.find(f, '|', 1, true)
    local u = string.sub(f, s + 1)
    if live(string.sub(f, 1, s - 1)) and not seen[u] then
      seen[u] = true
      out[#out + 1] = u
      out[#out + 1] = string.sub(v, string.find(v, '|', 1, true) + 1)
    end
  end
  return out
end
for k = 2, #KEYS do
  local all, n = redis.call('HGETALL', KEYS[k]), 0
  for i = 1, #all, 2 do
    if live(all[i]) then n = n + tonumber(all[i + 1]) end
  end
  out[#out + 1] = n
end
return out
