-- Compare-and-set a session's status, with its deadlines and start slot, atomically.
-- KEYS: 1 session hash, 2 deadline:idle, 3 deadline:hard, 4 starts zset, 5 changes channel,
--       6 the new status's index, 7.. every status index (the session leaves the one it is in)
-- ARGV: 1 session id, 2 allowed current statuses (space separated), 3 new status, 4 now ms,
--       5 idle deadline, 6 hard deadline, 7 start slot deadline
--       (each: '' keep, '-' remove, a number sets it), 8 '' or ms: only when the idle
--       deadline is due at that time, 9 '' or a ref: only while the session's processor is that
--       one (a recovery replaces only the processor it found lost), 10 '1': bump the epoch
--       (a new processor is about to start: older ones are fenced from now on),
--       11 '' or an epoch: only while the session's epoch is that one (a restart that was given
--       up, and maybe claimed again since, must not mark its own processor ready),
--       12.. hash field/value pairs
-- Returns {1, previous status, epoch} on success, {0, current status or ''} when refused.
-- A success publishes the session id on the changes channel (replicas drop cached routes).
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {0, ''}
end
local allowed = false
for status in string.gmatch(ARGV[2], '%S+') do
  if status == current then
    allowed = true
  end
end
if not allowed then
  return {0, current}
end
if ARGV[8] ~= '' then
  local idle = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not idle or tonumber(idle) > tonumber(ARGV[8]) then
    return {0, current}
  end
end
if ARGV[9] ~= '' and redis.call('HGET', KEYS[1], 'ref') ~= ARGV[9] then
  return {0, current}
end
if ARGV[11] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') ~= tonumber(ARGV[11]) then
  return {0, current}
end
local member = redis.call('HGET', KEYS[1], 'ix')
for i = 7, #KEYS do
  redis.call('ZREM', KEYS[i], member)
end
redis.call('ZADD', KEYS[6], 0, member)
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'status_changed_at', ARGV[4])
if #ARGV >= 12 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 12))
end
local epoch
if ARGV[10] == '1' then
  epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
else
  epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
end
local function apply(key, value)
  if value == '-' then
    redis.call('ZREM', key, ARGV[1])
  elseif value ~= '' then
    redis.call('ZADD', key, value, ARGV[1])
  end
end
apply(KEYS[2], ARGV[5])
apply(KEYS[3], ARGV[6])
apply(KEYS[4], ARGV[7])
redis.call('PUBLISH', KEYS[5], ARGV[1])
return {1, current, epoch}
