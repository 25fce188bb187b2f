-- Drop a snapshot and take it out of the running totals.
-- KEYS: 1 snapshot, 2 snapshot totals hash (fields count, bytes)
-- Returns 1 when there was one, else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'bytes', -redis.call('STRLEN', KEYS[1]))
if redis.call('HINCRBY', KEYS[2], 'count', -1) <= 0 then
  redis.call('DEL', KEYS[2])  -- the last one: totals start afresh
end
redis.call('DEL', KEYS[1])
return 1
