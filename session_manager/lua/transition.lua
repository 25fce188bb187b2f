-- Compare-and-set a session's status, with its deadlines and start slot, atomically.
-- KEYS: 1 session hash, 2 deadline:idle, 3 deadline:hard, 4 starts zset, 5 changes channel
-- ARGV: 1 status index key prefix, 2 session id, 3 allowed current statuses (space separated),
--       4 new status, 5 now ms, 6 idle deadline, 7 hard deadline, 8 start slot deadline
--       (each: '' keep, '-' remove, a number sets it), 9 '' or ms: only when the idle
--       deadline is due at that time, 10.. hash field/value pairs
-- Returns {1, previous status} on success, {0, current status or ''} when refused.
-- A success publishes the session id on the changes channel (replicas drop cached routes).
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {0, ''}
end
local allowed = false
for status in string.gmatch(ARGV[3], '%S+') do
  if status == current then
    allowed = true
  end
end
if not allowed then
  return {0, current}
end
if ARGV[9] ~= '' then
  local idle = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if not idle or tonumber(idle) > tonumber(ARGV[9]) then
    return {0, current}
  end
end
local member = redis.call('HGET', KEYS[1], 'ix')
redis.call('ZREM', ARGV[1] .. current, member)
redis.call('ZADD', ARGV[1] .. ARGV[4], 0, member)
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'status_changed_at', ARGV[5])
if #ARGV >= 10 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10))
end
local function apply(key, value)
  if value == '-' then
    redis.call('ZREM', key, ARGV[2])
  elseif value ~= '' then
    redis.call('ZADD', key, value, ARGV[2])
  end
end
apply(KEYS[2], ARGV[6])
apply(KEYS[3], ARGV[7])
apply(KEYS[4], ARGV[8])
redis.call('PUBLISH', KEYS[5], ARGV[2])
return {1, current}
