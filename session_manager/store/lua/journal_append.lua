-- Append one acknowledged mutating request to a live session's journal.
-- KEYS: 1 session hash, 2 the session's journal (zset scored by seq)
-- ARGV: 1 seq, 2 the encoded entry, 3 (optional) an entry written ahead for this request
-- Returns the journal's length once appended, 0 when the session has no record (it ended:
-- nothing to recover).
-- The entry replaces any other at its seq: the processor numbered this request so, and an
-- entry already there was written ahead for a request it never applied under that number
-- (journal_ahead.lua). ARGV[3], this request's own entry written ahead under a seq it did not
-- get, goes too.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[3] then
  redis.call('ZREM', KEYS[2], ARGV[3])
end
if tonumber(ARGV[1]) >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[2])
