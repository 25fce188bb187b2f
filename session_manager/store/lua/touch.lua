-- Move a ready session's idle deadline to now + its idle timeout and record the activity.
-- KEYS: 1 session hash, 2 deadline:idle, 3 deadline:hard
-- ARGV: 1 session id, 2 now ms
-- Returns {idle deadline, hard deadline} or false when the session is not ready.
local record = redis.call('HMGET', KEYS[1], 'status', 'idle_timeout_s')
if record[1] ~= 'ready' then
  return false
end
local deadline = tonumber(ARGV[2]) + tonumber(record[2]) * 1000
redis.call('ZADD', KEYS[2], 'GT', deadline, ARGV[1])
redis.call('HSET', KEYS[1], 'last_activity', ARGV[2])
local idle = redis.call('ZSCORE', KEYS[2], ARGV[1])
local hard = redis.call('ZSCORE', KEYS[3], ARGV[1])
return {idle, hard or ''}
