-- Claim a start slot for a session that exists (restore, recovery), first come first served.
-- KEYS: 1 session hash, 2 starts zset, 3 start queue zset (id -> arrival ms),
--       4 start waiters zset (id -> the waiter's lease expiry ms)
-- ARGV: 1 session id, 2 allowed statuses (space separated), 3 now ms, 4 arrival ms,
--       5 waiter lease expiry ms, 6 slot deadline ms, 7 max concurrent starts,
--       8 '' or a ref: only while the session's processor is that one (a recovery that found
--       it lost: once another recovery replaced it, the session is ready again, but moved on)
-- Returns {verdict, ahead}: verdict is claimed | moved | queued; ahead: waiters before it.
-- claimed: the slot is held (scored like a create's, so it expires by itself) and the id left
-- the queue; moved: the status is not allowed (another claimant started it, or it ended) or
-- the processor is not ARGV[8]'s: the caller does not start it; queued: the id waits, at
-- its arrival time, for its turn.
-- Only the first (max - used) waiters may claim, so slots go to the oldest arrivals. A waiter
-- whose lease expired (its manager died, or it gave up without leaving) is dropped first.
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[3])
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end
local current = redis.call('HGET', KEYS[1], 'status')
local allowed = false
if current then
  for status in string.gmatch(ARGV[2], '%S+') do
    if status == current then
      allowed = true
    end
  end
end
if allowed and ARGV[8] ~= '' and redis.call('HGET', KEYS[1], 'ref') ~= ARGV[8] then
  allowed = false
end
if not allowed then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {'moved', 0}
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
local ahead = redis.call('ZRANK', KEYS[3], ARGV[1])
-- Another claimant holds this id's slot and is about to change its status (next poll: moved),
-- or died (its slot expires, and this waiter claims in turn).
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
if held and tonumber(held) > tonumber(ARGV[3]) then
  return {'queued', ahead}
end
local used = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[3], '+inf')
if ahead < tonumber(ARGV[7]) - used then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {'claimed', ahead}
end
return {'queued', ahead}
