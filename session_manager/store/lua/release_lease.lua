-- Give a lease up only if the caller holds it (an expired lease may be someone else's now).
-- KEYS: 1 lease
-- ARGV: 1 holder id
-- Returns 1 when released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
else
  return 0
end
