-- A connection of a user joins a presence channel on a node.
-- KEYS[1]: members (hash, "node|user" -> "connections|user_info JSON")   KEYS[2]: nodes
-- KEYS[3]: what the node touched.   ARGV: node, user id, user_info JSON, touched member.
-- Returns {1 if the user had no connection on a live node else 0, user, info, user, info…}
-- (members on live nodes, each user once).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, uid = ARGV[1], ARGV[2]
local mine = node .. '|' .. uid
local alive = {[node] = true}
local all = redis.call('HGETALL', KEYS[1])
local out, seen, present, own, owninfo = {0}, {}, false, 0, ARGV[3]
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  local s = string.find(f, '|', 1, true)
  local n, u = string.sub(f, 1, s - 1), string.sub(f, s + 1)
  local vs = string.find(v, '|', 1, true)
  local c, info = tonumber(string.sub(v, 1, vs - 1)), string.sub(v, vs + 1)
  if f == mine then own, owninfo = c, info end
  if alive[n] == nil then
    local e = redis.call('ZSCORE', KEYS[2], n)
    alive[n] = (e and tonumber(e) >= now) and true or false
  end
  if alive[n] and c > 0 then
    if u == uid then present = true end
    if not seen[u] then
      seen[u] = true
      out[#out + 1] = u
      out[#out + 1] = info
    end
  end
end
redis.call('HSET', KEYS[1], mine, (own + 1) .. '|' .. owninfo)
redis.call('SADD', KEYS[3], ARGV[4])
if not present then
  out[1] = 1
  out[#out + 1] = uid
  out[#out + 1] = owninfo
end
return out
