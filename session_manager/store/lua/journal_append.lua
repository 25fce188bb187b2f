-- Append one acknowledged mutating request to a live session's journal.
-- KEYS: 1 session hash, 2 the session's journal (zset scored by seq)
-- ARGV: 1 seq, 2 the encoded entry
-- Returns the journal's length once appended, 0 when the session has no record (it ended:
-- nothing to recover).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[2])
