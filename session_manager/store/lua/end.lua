-- End a session: remove its record, index entries, deadlines and snapshot; leave a tombstone.
-- KEYS: 1 session hash, 2 sessions index, 3 deadline:idle, 4 deadline:hard, 5 starts zset,
--       6 tombstone, 7 snapshot, 8 changes channel, 9 the tenant's user set,
--       10 the tenant's index, 11 the owner key of a knowledge base named by the session id,
--       12 snapshot totals hash (count, bytes; kept by store/snapshots.py),
--       13.. every status index and the record's label indexes (the session leaves them all)
-- ARGV: 1 session id, 2 allowed current statuses ('' any), 3 tombstone value,
--       4 tombstone TTL ms, 5 the record's user_id, 6 its labels field and 7 its tenant field,
--       as the caller read them to name KEYS 9..
-- Returns {1, previous status} when ended, {0, current status or ''} when refused, and
-- {-1, ''} when user_id, labels or tenant differ from ARGV (the id was reused since: read
-- again).
-- Ending publishes the session id on the changes channel (replicas drop cached routes). The
-- session's private knowledge base stays claimed while the tombstone lives, so no new session
-- can name it while it is being dropped.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {0, ''}
end
if ARGV[2] ~= '' then
  local allowed = false
  for status in string.gmatch(ARGV[2], '%S+') do
    if status == current then
      allowed = true
    end
  end
  if not allowed then
    return {0, current}
  end
end
local record = redis.call('HMGET', KEYS[1], 'ix', 'user_id', 'labels', 'tenant')
if record[2] ~= ARGV[5] or (record[3] or '') ~= ARGV[6] or (record[4] or '') ~= ARGV[7] then
  return {-1, ''}
end
local member = record[1]
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', KEYS[10], member)
for i = 13, #KEYS do
  redis.call('ZREM', KEYS[i], member)
end
redis.call('SREM', KEYS[9], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('HINCRBY', KEYS[12], 'bytes', -redis.call('STRLEN', KEYS[7]))
  if redis.call('HINCRBY', KEYS[12], 'count', -1) <= 0 then
    redis.call('DEL', KEYS[12])  -- the last one: totals start afresh
  end
end
redis.call('DEL', KEYS[1], KEYS[7])
redis.call('PEXPIRE', KEYS[11], ARGV[4])
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[4])
redis.call('PUBLISH', KEYS[8], ARGV[1])
return {1, current}
