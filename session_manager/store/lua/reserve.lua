-- Reserve capacity for a new session and write its `starting` record, atomically; claim its
-- knowledge base for its tenant in the same step.
-- KEYS: 1 session hash, 2 sessions index, 3 status:starting index, 4 the tenant's user set,
--       5 starts zset, 6 start waiters zset (restores and recoveries queued for a slot),
--       7 the tenant's index, 8 the knowledge base's owner,
--       9 the session hash named by kb_id (KEYS[1] when kb_id is the session's own id),
--       10.. label indexes
-- ARGV: 1 session id, 2 index member, 3 now ms, 4 start deadline ms, 5 max sessions,
--       6 max per user, 7 max concurrent starts, 8 max tenant sessions,
--       9 the owner value to claim the knowledge base with, 10 the tenant,
--       11.. hash field/value pairs
-- Returns {verdict, used}: verdict is ok | exists | kb | sessions | tenant | user | starts;
-- with kb, `used` is the knowledge base's current owner value ('' for a live session's id).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', 0}
end
-- A knowledge base belongs to whoever claimed it first: a tenant (shared) or one session
-- (private). Naming a live session's id as kb_id is refused even for records older than
-- the owner keys.
-- The owner value this session would claim is its own (a session made anew under its
-- Idempotency-Key after its first start failed still owns its private one).
local owner = redis.call('GET', KEYS[8])
if owner and owner ~= ARGV[10] and owner ~= ARGV[9] then
  return {'kb', owner}
end
if KEYS[9] ~= KEYS[1] and redis.call('EXISTS', KEYS[9]) == 1 then
  return {'kb', ''}
end
local used = redis.call('ZCARD', KEYS[2])
if used >= tonumber(ARGV[5]) then
  return {'sessions', used}
end
used = redis.call('ZCARD', KEYS[7])
if used >= tonumber(ARGV[8]) then
  return {'tenant', used}
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
if not owner then
  redis.call('SET', KEYS[8], ARGV[9])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 11))
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[7], 0, ARGV[2])
for i = 10, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[2])
end
return {'ok', 0}
