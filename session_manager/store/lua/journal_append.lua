-- Append one acknowledged mutating request to a live session's journal.
-- KEYS: 1 session hash, 2 the session's journal (zset scored by seq)
-- ARGV: 1 seq, 2 the encoded entry, 3 the session's epoch the request's route was read at
--       ('' : not checked), 4 (optional) an entry written ahead for this request
-- Returns the journal's length once appended, 0 when the session has no record (it ended:
-- nothing to recover), -2 when the session's epoch moved on: the request was answered by a
-- processor replaced since (fenced), so it is not acknowledged (nothing written; ARGV[4], if
-- any, stays for the caller to void).
-- The entry replaces any other at its seq: the processor numbered this request so, and an
-- entry already there was written ahead for a request it never applied under that number
-- (journal_ahead.lua). ARGV[4], this request's own entry written ahead under a seq it did not
-- get, goes too.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= ARGV[3] then
  return -2
end
if ARGV[4] then
  redis.call('ZREM', KEYS[2], ARGV[4])
end
if tonumber(ARGV[1]) >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[2])
