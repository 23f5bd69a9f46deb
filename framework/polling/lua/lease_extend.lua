-- Extend a lease only if this owner still holds it (compare-and-extend).
-- KEYS[1]  lease key (lease:{name})
-- ARGV[1]  owner token
-- ARGV[2]  new TTL in milliseconds
-- Returns  1 if extended, 0 if the lease is gone or held by another owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
