-- Make persisted messages visible, atomically: check the lease and the offsets, append each
-- to the capped history stream (id = offset), record idempotency keys, move the channel's top,
-- and PUBLISH the whole batch to the nodes' fan-out channel.
-- KEYS: meta, lease, stream, wanted, then one key per message with an idempotency key
-- ARGV: token, epoch, stream maxlen, fan-out channel, batch payload (the records, each after
--       its 4-byte big-endian length), first offset, count, then per message with an
--       idempotency key, in order: its index in the batch (0-based), the prefix of its
--       idempotency value (the record follows it), the value's ttl ms
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
local payload = ARGV[5]
local pos = 1
local key = 5
local keyed = 8
local next_keyed = tonumber(ARGV[keyed])
for i = 0, count - 1 do
  local size
  size, pos = struct.unpack('>I4', payload, pos)
  local record = string.sub(payload, pos, pos + size - 1)
  pos = pos + size
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], (first + i) .. '-0', 'm', record)
  if next_keyed == i then
    redis.call('SET', KEYS[key], ARGV[keyed + 1] .. record, 'PX', ARGV[keyed + 2])
    key = key + 1
    keyed = keyed + 3
    next_keyed = tonumber(ARGV[keyed])
  end
end
redis.call('HSET', KEYS[1], 'top', top + count)
redis.call('PUBLISH', ARGV[4], ARGV[5])
local wanted = redis.call('GET', KEYS[4])
if wanted and wanted ~= ARGV[1] then
  return {1, 1}
end
return {1, 0}
