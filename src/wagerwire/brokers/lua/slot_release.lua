-- Free closed streams' slots: every slot of every subject at once.
-- KEYS: one sorted set per subject.
-- ARGV[1..#KEYS]: how many slot ids follow for each key, in KEYS order; then the slot ids.
local at = #KEYS + 1
for i, key in ipairs(KEYS) do
  for _ = 1, tonumber(ARGV[i]) do
    redis.call('ZREM', key, ARGV[at])
    at = at + 1
  end
end
return 1
