-- End a session: remove its record, index entries, deadlines and snapshot; leave a tombstone.
-- KEYS: 1 session hash, 2 sessions index, 3 deadline:idle, 4 deadline:hard, 5 starts zset,
--       6 tombstone, 7 snapshot, 8 changes channel
-- ARGV: 1 status index key prefix, 2 user set key prefix, 3 label index key prefix,
--       4 session id, 5 allowed current statuses ('' any), 6 tombstone value, 7 tombstone TTL ms
-- Returns {1, previous status} when ended, {0, current status or ''} when refused.
-- Ending publishes the session id on the changes channel (replicas drop cached routes).
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {0, ''}
end
if ARGV[5] ~= '' then
  local allowed = false
  for status in string.gmatch(ARGV[5], '%S+') do
    if status == current then
      allowed = true
    end
  end
  if not allowed then
    return {0, current}
  end
end
local record = redis.call('HMGET', KEYS[1], 'ix', 'user_id', 'labels')
local member = record[1]
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', ARGV[1] .. current, member)
redis.call('SREM', ARGV[2] .. record[2], ARGV[4])
if record[3] then
  for key, value in pairs(cjson.decode(record[3])) do
    redis.call('ZREM', ARGV[3] .. key .. '=' .. value, member)
  end
end
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('DEL', KEYS[1], KEYS[7])
redis.call('SET', KEYS[6], ARGV[6], 'PX', ARGV[7])
redis.call('PUBLISH', KEYS[8], ARGV[4])
return {1, current}
