-- Keep a snapshot and the running totals in one step (O(1) /admin/stats).
-- KEYS: 1 snapshot, 2 snapshot totals hash (fields count, bytes)
-- ARGV: 1 the snapshot's bytes
-- Returns the snapshot's size.
local existed = redis.call('EXISTS', KEYS[1])
local old = redis.call('STRLEN', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
local size = string.len(ARGV[1])
redis.call('HINCRBY', KEYS[2], 'bytes', size - old)
if existed == 0 then
  redis.call('HINCRBY', KEYS[2], 'count', 1)
end
return size
