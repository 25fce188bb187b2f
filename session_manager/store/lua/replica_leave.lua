-- A manager instance stops: it leaves the set, and learns how many other live instances remain.
-- KEYS: 1 replicas zset
-- ARGV: 1 instance id, 2 stale after (ms)
-- Two instances leaving at once are serialised here: exactly the second sees none left.
-- Returns the number of other live instances.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
