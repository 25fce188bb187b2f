-- Write a request's entry ahead of its answer, under the seq the processor is expected to give.
-- KEYS: 1 session hash, 2 the session's journal (zset scored by seq)
-- ARGV: 1 the expected seq, 2 the encoded entry, 3 the session's epoch the request's route was
--       read at ('' : not checked)
-- Returns the journal's length once written; 0 when the session has no record; -1 when an
-- entry already holds that seq (the expectation is stale: nothing written, the proxy appends
-- once the processor answered); -2 when the session's epoch moved on (its processor was
-- replaced since the route was read: nothing written, the request goes to the new one).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= ARGV[3] then
  return -2
end
if redis.call('ZCOUNT', KEYS[2], ARGV[1], ARGV[1]) > 0 then
  return -1
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[2])
