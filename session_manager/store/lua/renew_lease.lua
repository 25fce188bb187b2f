-- Extend a lease only while the caller still holds it.
-- KEYS: 1 lease
-- ARGV: 1 holder id, 2 TTL ms
-- Returns 1 when extended, 0 when someone else (or nobody) holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  return 0
end
