-- Make persisted messages visible, atomically: check the lease and the offsets, append each
-- to the capped history stream (id = offset), record idempotency keys, move the channel's top,
-- and PUBLISH the whole batch to the nodes' fan-out channel.
-- KEYS: meta, lease, stream, wanted, then one key per message with an idempotency key
-- ARGV: token, epoch, stream maxlen, fan-out channel, batch payload, first offset, count,
--       then per message: record, idempotency value ('' = none), idempotency ttl ms
-- Returns {1, wanted} done, {-1} lease lost, {-2} epoch changed, {-3, top} offsets disagree.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return {-1}
end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return {-2}
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local first = tonumber(ARGV[6])
if first ~= top + 1 then
  return {-3, top}
end
local count = tonumber(ARGV[7])
local key = 5
for i = 0, count - 1 do
  local base = 8 + i * 3
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], (first + i) .. '-0', 'm', ARGV[base])
  if ARGV[base + 1] ~= '' then
    redis.call('SET', KEYS[key], ARGV[base + 1], 'PX', ARGV[base + 2])
    key = key + 1
  end
end
redis.call('HSET', KEYS[1], 'top', top + count)
redis.call('PUBLISH', ARGV[4], ARGV[5])
local wanted = redis.call('GET', KEYS[4])
if wanted and wanted ~= ARGV[1] then
  return {1, 1}
end
return {1, 0}
