-- Reserve capacity for a new session and write its `starting` record, atomically.
-- KEYS: 1 session hash, 2 sessions index, 3 status:starting index, 4 user set, 5 starts zset,
--       6 start waiters zset (restores and recoveries queued for a slot), 7.. label indexes
-- ARGV: 1 session id, 2 index member, 3 now ms, 4 start deadline ms, 5 max sessions,
--       6 max per user, 7 max concurrent starts, 8.. hash field/value pairs
-- Returns {verdict, used}: verdict is ok | exists | sessions | user | starts.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', 0}
end
local used = redis.call('ZCARD', KEYS[2])
if used >= tonumber(ARGV[5]) then
  return {'sessions', used}
end
used = redis.call('SCARD', KEYS[4])
if used >= tonumber(ARGV[6]) then
  return {'user', used}
end
-- Start slots past their deadline belong to managers that died mid-start: not counted.
-- Restores and recoveries waiting for a slot go first (a user waits on an existing session):
-- a create takes a slot only when one is left after every live waiter got one.
used = redis.call('ZCOUNT', KEYS[5], '(' .. ARGV[3], '+inf')
  + redis.call('ZCOUNT', KEYS[6], '(' .. ARGV[3], '+inf')
if used >= tonumber(ARGV[7]) then
  return {'starts', used}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
for i = 7, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[2])
end
return {'ok', 0}
