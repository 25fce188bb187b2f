-- Replace a live session's token hash, only if it still holds the one the caller presented.
-- KEYS: 1 session hash, 2 changes channel
-- ARGV: 1 session id, 2 current token hash, 3 new token hash
-- Returns 1 when replaced, 0 when the session is gone or its token changed meanwhile.
-- A success publishes the session id, so every replica drops its cached route (and hash).
local current = redis.call('HGET', KEYS[1], 'token_hash')
if not current or current ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
