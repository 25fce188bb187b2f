-- A manager instance says it is alive; instances silent for longer than the stale time go.
-- KEYS: 1 replicas zset
-- ARGV: 1 instance id, 2 stale after (ms)
-- Scores are Redis's own clock, so replicas on hosts with skewed clocks agree.
-- Returns the number of live instances, this one included.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
redis.call('ZADD', KEYS[1], now, ARGV[1])
return redis.call('ZCARD', KEYS[1])
